"""Training pages: the run list, the new-run form, and a run's live page."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from annotation.errors import ApplicationError, ForbiddenError, NotFoundError
from annotation.models import Role
from annotation.selectors import membership_role, user_role
from training.api import run_state
from training.config import ConfigError
from training.consumers import run_live_path
from training.models import TrainingRun
from training.runner import ConfigField, config_fields, get_trainer
from training.selectors import (
    base_models_available,
    is_training_staff,
    training_dataset_get_for_user,
    training_datasets_for_user,
    training_run_get_for_user,
    training_run_list_for_user,
)
from training.services import training_run_create


def _may_start_runs(user) -> bool:
    return is_training_staff(user) or user_role(user) == Role.MANAGER


@login_required
@require_http_methods(["GET"])
def training_run_list(request: HttpRequest) -> HttpResponse:
    """List the runs the user may read, newest first."""
    runs = list(training_run_list_for_user(user=request.user)[:200])
    return render(
        request,
        "training/run_list.html",
        {
            "runs": runs,
            "can_start": _may_start_runs(request.user),
            "active": any(r.status in TrainingRun.ACTIVE for r in runs),
        },
    )


class RunForm(forms.Form):
    """Dataset, base model and GPUs, then one field per setting of the kind's config (with its default)."""

    dataset = forms.TypedChoiceField(coerce=int, label="Dataset snapshot")
    base_model_path = forms.ChoiceField(
        label="Base model",
        help_text="Model folders found under the model roots (ARBITER_MODEL_ROOTS).",
    )
    gpus = forms.IntegerField(
        min_value=0, max_value=64, initial=0, label="GPUs",
        help_text="0 or 1 trains in the worker's process; more launches one process per GPU with accelerate.",
    )  # fmt: skip

    def __init__(
        self,
        *args: Any,
        datasets,
        models,
        fields: list[ConfigField],
        prefer: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields["dataset"].choices = [
            (d.pk, f"{d.campaign.name} — v{d.version} ({d.get_method_display()}, {d.comparison_count} comparisons"
                   f"{', building' if d.status == 'building' else ''})")
            for d in datasets
        ]  # fmt: skip
        self.fields["base_model_path"].choices = [(str(m), _model_label(m)) for m in models]
        if models and not self.is_bound and "base_model_path" not in self.initial:
            # A reward model is usually a sequence classifier, a policy a causal LM: offer one first.
            fitting = [m for m in models if prefer and prefer in _model_label(m)]
            self.initial["base_model_path"] = str((fitting or models)[0])
        self.config_names = []
        for f in fields:
            self.fields[f.name] = _form_field(f)
            self.config_names.append(f.name)

    def config(self) -> dict[str, Any]:
        return {name: self.cleaned_data[name] for name in self.config_names}

    def config_fields(self):
        return [self[name] for name in self.config_names]


def _model_label(path) -> str:
    """Return the folder with its architecture, read from its config.json (a few hundred bytes)."""
    try:
        architectures = json.loads((path / "config.json").read_text()).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        architectures = []
    return f"{path} ({', '.join(architectures)})" if architectures else str(path)


def _form_field(f: ConfigField) -> forms.Field:
    label = f.name.replace("_", " ").capitalize()
    common = {
        "label": label,
        "help_text": f.help.replace("`", ""),
        "initial": f.default,
        "required": False,
    }
    if f.type == "bool":
        return forms.BooleanField(**common)
    if f.type == "choice":
        return forms.ChoiceField(
            choices=[(c, c) for c in f.choices], **{**common, "required": True}
        )
    if f.type == "int":
        return forms.IntegerField(**{**common, "required": not f.optional})
    if f.type == "float":
        return forms.FloatField(**{**common, "required": not f.optional})
    return forms.CharField(**{**common, "required": not f.optional})


@login_required
@require_http_methods(["GET", "POST"])
def training_run_new(request: HttpRequest) -> HttpResponse:
    """Start a run on a snapshot (`?kind=`, reward model by default): every setting has its default."""
    if not _may_start_runs(request.user):
        return render(request, "403.html", status=403)
    kind = request.POST.get("kind") or request.GET.get("kind") or TrainingRun.Kind.REWARD
    if kind not in TrainingRun.Kind.values:
        kind = TrainingRun.Kind.REWARD
    context: dict[str, Any] = {
        "kind": kind,
        "kinds": TrainingRun.Kind.choices,
        "roots": [str(r) for r in settings.ARBITER_MODEL_ROOTS],
    }
    try:
        spec = get_trainer(kind)
    except ConfigError as exc:  # a kind whose trainer is not installed here
        return render(request, "training/run_new.html", {**context, "unavailable": str(exc)})
    context["spec"] = spec
    if spec.data != "preference":
        context["unavailable"] = (
            f"{spec.title} trains on a campaign's prompts, not on a snapshot: start it with "
            "POST /api/v1/training/runs/create/ and a campaign_id."
        )
        return render(request, "training/run_new.html", context)
    initial: dict[str, Any] = {}
    if request.GET.get("dataset", "").isdigit():
        initial["dataset"] = int(request.GET["dataset"])
    form = RunForm(
        request.POST or None,
        initial=initial,
        datasets=list(training_datasets_for_user(user=request.user)[:200]),
        models=base_models_available(),
        fields=config_fields(spec),
        prefer="ForSequenceClassification"
        if spec.kind == TrainingRun.Kind.REWARD
        else "ForCausalLM",
    )
    if request.method == "POST" and form.is_valid():
        try:
            dataset = training_dataset_get_for_user(
                user=request.user, dataset_id=form.cleaned_data["dataset"]
            )
            run = training_run_create(
                kind=spec.kind, dataset=dataset, base_model_path=form.cleaned_data["base_model_path"],
                config=form.config(), gpus=form.cleaned_data["gpus"], created_by=request.user,
            )  # fmt: skip
        except (NotFoundError, ForbiddenError) as exc:
            form.add_error("dataset", exc.message)
        except ApplicationError as exc:
            _add_service_error(form, exc)
        else:
            messages.success(request, f"Run {run.pk} is queued; this page follows it live.")
            return redirect("training_run_detail", run_id=run.pk)
    return render(request, "training/run_new.html", {**context, "form": form})


def _add_service_error(form: RunForm, exc: ApplicationError) -> None:
    """Show a service error on the field it names (`config.learning_rate` -> learning_rate)."""
    for name in exc.extra.get("fields") or {}:
        field = name.removeprefix("config.")
        if field == "dataset_id":
            field = "dataset"
        if field in form.fields:
            form.add_error(field, exc.message.split(": ", 1)[-1])
            return
    form.add_error(None, exc.message)


@login_required
@require_http_methods(["GET"])
def training_run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    """Show a run: progress bar, loss and accuracy charts, log, cancel and resume; live over a websocket."""
    try:
        run = training_run_get_for_user(user=request.user, run_id=run_id)
    except NotFoundError as exc:
        raise Http404(exc.message) from exc
    can_manage = is_training_staff(request.user) or (
        run.campaign is not None
        and membership_role(user=request.user, campaign=run.campaign) == Role.MANAGER
    )
    page = {
        "runId": run.pk,
        "liveUrl": run_live_path(run.pk),
        "canManage": can_manage,
        "csrfToken": get_token(request),
        "cancelUrl": reverse("api:training_run_cancel", kwargs={"run_id": run.pk}),
        "resumeUrl": reverse("api:training_run_resume", kwargs={"run_id": run.pk}),
        "initial": run_state(run),
    }
    return render(
        request, "training/run_detail.html", {"run": run, "page": page, "can_manage": can_manage}
    )
