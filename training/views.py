"""Training pages: the run list, the new-run form, a run's live page, and a campaign's training rules."""

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
from annotation.models import Dataset, Role
from annotation.selectors import membership_role, user_role
from annotation.views.forms import form_apply_error
from training.api import run_state
from training.config import ConfigError
from training.consumers import run_live_path
from training.models import TrainingRule, TrainingRun
from training.rules import training_rule_create, training_rule_update
from training.rules import training_rule_delete as training_rule_delete_service
from training.runner import ConfigField, config_fields, get_trainer
from training.selectors import (
    base_models_available,
    is_training_staff,
    training_campaign_get_for_user,
    training_campaigns_for_user,
    training_dataset_get_for_user,
    training_datasets_for_user,
    training_judgment_count,
    training_reward_runs_succeeded,
    training_rule_campaign_get_for_user,
    training_rule_get_for_user,
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
    for run in runs:
        metrics = (run.summary or {}).get("metrics") or {}
        # A reward model's held-out accuracy, or DPO's (its implicit reward's); PPO has none.
        run.held_out_accuracy = metrics.get("eval_accuracy", metrics.get("eval_rewards/accuracies"))
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
    """What to train on, the base model and GPUs, then one field per setting of the kind's config.

    A kind that trains on a snapshot (reward model, DPO) picks one in `dataset`; a kind that reads
    prompts (PPO) picks a campaign or a snapshot in `source`. A config field naming a model folder
    (the kind's `model_paths`, PPO's `reward_model_path`) offers finished runs and model folders.
    """

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
        spec,
        datasets,
        campaigns=(),
        models,
        fields: list[ConfigField],
        reward_runs=(),
        policy_runs=(),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.spec = spec
        self.reads_prompts = spec.data == "prompts"
        if self.reads_prompts:
            self.fields["source"] = forms.ChoiceField(
                label="Prompts from",
                choices=_grouped([
                    ("Campaigns (every prompt)", [(f"campaign:{c.pk}", c.name) for c in campaigns]),
                    ("Dataset snapshots (their prompts)", [(f"dataset:{d.pk}", _dataset_label(d)) for d in datasets]),
                ], flatten=False),
                help_text="The prompts the policy answers during training: all of a campaign's, or those of a snapshot.",
            )  # fmt: skip
        else:
            self.fields["dataset"] = forms.TypedChoiceField(
                coerce=int, label="Dataset snapshot", choices=[(d.pk, _dataset_label(d)) for d in datasets]
            )  # fmt: skip
        self.order_fields(["source", "dataset", "base_model_path", "gpus"])
        if not getattr(spec, "multi_gpu", True):
            # The service refuses more, naming the field.
            self.fields["gpus"].widget.attrs["max"] = 1
            self.fields["gpus"].help_text = f"A {spec.title} run trains on one device: 0 or 1."
        if spec.kind != "reward":
            self.fields["base_model_path"].label = "Policy (base model)"
            self.fields["base_model_path"].help_text = POLICY_HELP
        folders = [(str(m), _model_label(m)) for m in models]
        policies = [
            (r.artifacts["model"], _run_label(r)) for r in policy_runs if r.artifacts.get("model")
        ]
        self.fields["base_model_path"].choices = _grouped(
            [("Model folders", folders), ("Finished runs", policies)]
        )
        prefer = "ForSequenceClassification" if spec.kind == "reward" else "ForCausalLM"
        if models and not self.is_bound and "base_model_path" not in self.initial:
            # A reward model is usually a sequence classifier, a policy a causal LM: offer one first.
            fitting = [m for m in models if prefer in _model_label(m)]
            self.initial["base_model_path"] = str((fitting or models)[0])
        self.config_names = []
        self.model_path_names = set(getattr(spec, "model_paths", ()))
        required = set(getattr(spec, "required_model_paths", ()))
        for f in fields:
            if f.name in self.model_path_names:
                self.fields[f.name] = self._model_path_field(
                    f, required=f.name in required, models=models, reward_runs=reward_runs
                )
            else:
                self.fields[f.name] = _form_field(f)
            self.config_names.append(f.name)

    def _model_path_field(
        self, f: ConfigField, *, required: bool, models, reward_runs
    ) -> forms.Field:
        label = f.name.replace("_", " ").capitalize()
        if f.name == "reward_model_path":
            label = "Reward model"
            runs = [
                (r.artifacts["model"], _run_label(r))
                for r in reward_runs
                if r.artifacts.get("model")
            ]
            fitting = [m for m in models if "ForSequenceClassification" in _model_label(m)]
            others = [m for m in models if m not in fitting]
            groups = [
                ("Succeeded reward-model runs", runs),
                ("Model folders", [(str(m), _model_label(m)) for m in [*fitting, *others]]),
            ]
            if runs and not self.is_bound and f.name not in self.initial:
                self.initial[f.name] = runs[0][0]
        else:
            groups = [("Model folders", [(str(m), _model_label(m)) for m in models])]
        choices = _grouped(groups)
        if not required:
            empty = "— the policy as the run starts" if f.name == "reference_path" else "— none"
            choices = [("", empty), *choices]
        return forms.ChoiceField(
            label=label, choices=choices, required=required, help_text=f.help.replace("`", "")
        )

    def config(self) -> dict[str, Any]:
        values = {name: self.cleaned_data[name] for name in self.config_names}
        for name in getattr(self.spec, "model_paths", ()):
            if name in values and values[name] == "":
                values[name] = None  # an optional model folder left empty
        return values

    def config_fields(self):
        """Return the settings' fields, but for the model folders (shown with the base model)."""
        return [self[name] for name in self.config_names if name not in self.model_path_names]

    def model_path_fields(self):
        return [self[name] for name in self.config_names if name in self.model_path_names]


def _grouped(groups: list[tuple[str, list[tuple[str, str]]]], *, flatten: bool = True) -> list:
    """Return Django choices with one group per non-empty list (with `flatten`, a lone group is flat)."""
    kept = [(title, choices) for title, choices in groups if choices]
    if flatten and len(kept) == 1:
        return list(kept[0][1])
    return kept


def _dataset_label(d) -> str:
    building = ", building" if d.status == "building" else ""
    return f"{d.campaign.name} — v{d.version} ({d.get_method_display()}, {d.comparison_count} comparisons{building})"


def _run_label(run: TrainingRun) -> str:
    """Return a finished run as a choice: its number, what it trained on and its held-out result."""
    where = run.campaign.name if run.campaign_id else "no campaign"
    if run.dataset_id:
        where += f" v{run.dataset.version}"
    metrics = (run.summary or {}).get("metrics") or {}
    accuracy = metrics.get("eval_accuracy", metrics.get("eval_rewards/accuracies"))
    result = f", held-out accuracy {accuracy:.3f}" if isinstance(accuracy, int | float) else ""
    return f"Run #{run.pk} — {run.get_kind_display()} on {where}{result}"


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


POLICY_HELP = (
    "The causal language model to train: a folder under the model roots, or a finished run's model."
)
KIND_INTROS = {
    TrainingRun.Kind.REWARD: "Trains a reward model on a dataset snapshot's preference pairs, with the "
    "Bradley–Terry loss (TRL's RewardTrainer).",
    TrainingRun.Kind.DPO: "Trains a policy directly on a dataset snapshot's preference pairs with "
    "Direct Preference Optimization (TRL's DPOTrainer); the frozen reference is the policy as it starts.",
    TrainingRun.Kind.PPO: "Trains a policy with PPO: it answers prompts, a reward model scores the answers, "
    "and a KL penalty keeps it near the reference policy. Pick the prompts, the policy and a reward model.",
}


@login_required
@require_http_methods(["GET", "POST"])
def training_run_new(request: HttpRequest) -> HttpResponse:
    """Start a run (`?kind=`, reward model by default): every setting has its default."""
    if not _may_start_runs(request.user):
        return render(request, "403.html", status=403)
    kind = request.POST.get("kind") or request.GET.get("kind") or TrainingRun.Kind.REWARD
    if kind not in TrainingRun.Kind.values:
        kind = TrainingRun.Kind.REWARD
    context: dict[str, Any] = {
        "run_title": "training",
        "kind": kind,
        "kinds": TrainingRun.Kind.choices,
        "intro": KIND_INTROS.get(kind, ""),
        "roots": [str(r) for r in settings.ARBITER_MODEL_ROOTS],
    }
    try:
        spec = get_trainer(kind)
    except ConfigError as exc:  # a kind whose trainer is not installed here
        return render(request, "training/run_new.html", {**context, "unavailable": str(exc)})
    context["spec"] = spec
    # "New reward model run", but "New PPO run".
    context["run_title"] = spec.title if spec.title.isupper() else spec.title.lower()
    initial: dict[str, Any] = {}
    if request.GET.get("dataset", "").isdigit():
        initial["dataset"] = int(request.GET["dataset"])
        initial["source"] = f"dataset:{request.GET['dataset']}"
    elif request.GET.get("campaign", "").isdigit():
        initial["source"] = f"campaign:{request.GET['campaign']}"
    finished = training_run_list_for_user(user=request.user).filter(
        status=TrainingRun.Status.SUCCEEDED
    )
    form = RunForm(
        request.POST or None,
        initial=initial,
        spec=spec,
        datasets=list(training_datasets_for_user(user=request.user)[:200]),
        campaigns=list(training_campaigns_for_user(user=request.user)[:200])
        if spec.data == "prompts"
        else (),
        models=base_models_available(),
        fields=config_fields(spec),
        reward_runs=list(training_reward_runs_succeeded(user=request.user)),
        policy_runs=list(finished.exclude(kind=TrainingRun.Kind.REWARD)[:100])
        if spec.kind != TrainingRun.Kind.REWARD
        else (),
    )
    if request.method == "POST" and form.is_valid():
        source_field = "source" if form.reads_prompts else "dataset"
        try:
            dataset, campaign = _training_source(request, form)
            run = training_run_create(
                kind=spec.kind, dataset=dataset, campaign=campaign, base_model_path=form.cleaned_data["base_model_path"],
                config=form.config(), gpus=form.cleaned_data["gpus"], created_by=request.user,
            )  # fmt: skip
        except (NotFoundError, ForbiddenError) as exc:
            form.add_error(source_field, exc.message)
        except ApplicationError as exc:
            form_apply_error(
                form, exc, renames={"dataset_id": source_field, "campaign_id": source_field}
            )
        else:
            messages.success(request, f"Run {run.pk} is queued; this page follows it live.")
            return redirect("training_run_detail", run_id=run.pk)
    return render(request, "training/run_new.html", {**context, "form": form})


def _training_source(request: HttpRequest, form: RunForm):
    """Return (dataset, campaign) the form picked, each checked for the user; one of them is None."""
    if not form.reads_prompts:
        return training_dataset_get_for_user(
            user=request.user, dataset_id=form.cleaned_data["dataset"]
        ), None
    what, _, pk = form.cleaned_data["source"].partition(":")
    if what == "dataset":
        return training_dataset_get_for_user(user=request.user, dataset_id=int(pk)), None
    return None, training_campaign_get_for_user(user=request.user, campaign_id=int(pk))


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


# --- Training rules of a campaign (its managers and superusers) ----------------------------------------


class RuleForm(forms.Form):
    """When a rule fires, what it snapshots, and the reward model it trains (one field per setting)."""

    kind = forms.ChoiceField(
        label="When", choices=TrainingRule.Kind.choices, widget=forms.RadioSelect
    )
    n = forms.IntegerField(
        label="N", min_value=1, required=False,
        help_text="Judgments between runs (for “every N judgments”); counted from the rule's last run.",
    )  # fmt: skip
    dataset_method = forms.ChoiceField(
        label="Aggregation", choices=Dataset.Method.choices, initial=Dataset.Method.DAWID_SKENE,
        help_text="How each fresh snapshot aggregates the judgments.",
    )  # fmt: skip
    dataset_params = forms.CharField(
        label="Aggregation parameters", required=False, initial="{}",
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
        help_text='A JSON object, e.g. {"bootstrap_rounds": 200}; {} keeps the defaults.',
    )  # fmt: skip
    base_model_path = forms.ChoiceField(
        label="Base model",
        help_text="The reward model's starting point: a model folder under the model roots.",
    )
    gpus = forms.IntegerField(min_value=0, max_value=64, initial=0, label="GPUs")
    is_active = forms.BooleanField(
        label="Active", required=False, initial=True, help_text="An inactive rule starts nothing."
    )

    def __init__(
        self, *args: Any, models, fields: list[ConfigField], current_model: str = "", **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        choices = [(str(m), _model_label(m)) for m in models]
        if current_model and current_model not in {c for c, _ in choices}:
            choices.insert(
                0, (current_model, f"{current_model} (not found under the model roots now)")
            )
        self.fields["base_model_path"].choices = choices
        if models and not self.is_bound and not self.initial.get("base_model_path"):
            fitting = [m for m in models if "ForSequenceClassification" in _model_label(m)]
            self.initial["base_model_path"] = str((fitting or models)[0])
        self.config_names = []
        for f in fields:
            self.fields[f.name] = _form_field(f)
            self.config_names.append(f.name)

    def clean_dataset_params(self) -> dict[str, Any]:
        text = (self.cleaned_data.get("dataset_params") or "").strip() or "{}"
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(
                f"is not valid JSON ({exc.msg} at character {exc.pos})"
            ) from exc
        if not isinstance(value, dict):
            raise forms.ValidationError(
                "must be a JSON object of parameter names and values, e.g. {}"
            )
        return value

    def rule_values(self) -> dict[str, Any]:
        """Return the service's keyword arguments."""
        data = self.cleaned_data
        return {
            "kind": data["kind"],
            "n": data["n"],
            "dataset_method": data["dataset_method"],
            "dataset_params": data["dataset_params"],
            "base_model_path": data["base_model_path"],
            "gpus": data["gpus"],
            "is_active": data["is_active"],
            "config": {name: data[name] for name in self.config_names},
        }

    def config_fields(self):
        return [self[name] for name in self.config_names]


def _rule_form(request: HttpRequest, rule: TrainingRule | None = None) -> RuleForm:
    initial: dict[str, Any] = {"kind": TrainingRule.Kind.EVERY_N_JUDGMENTS, "n": 100}
    if rule is not None:
        initial = {
            "kind": rule.kind, "n": rule.n, "dataset_method": rule.dataset_method,
            "dataset_params": json.dumps(rule.dataset_params), "base_model_path": rule.base_model_path,
            "gpus": rule.gpus, "is_active": rule.is_active, **rule.config,
        }  # fmt: skip
    return RuleForm(
        request.POST or None,
        initial=initial,
        models=base_models_available(),
        fields=config_fields(get_trainer(TrainingRun.Kind.REWARD)),
        current_model=rule.base_model_path if rule is not None else "",
    )


def _campaign_for_rules(request: HttpRequest, campaign_id: int):
    """Return the campaign, or the 403 page for its researchers; raise 404 for anyone else."""
    try:
        return training_rule_campaign_get_for_user(user=request.user, campaign_id=campaign_id)
    except NotFoundError as exc:
        raise Http404(exc.message) from exc
    except ForbiddenError:
        return render(request, "403.html", status=403)


def _rule_for(request: HttpRequest, rule_id: int):
    """Return the rule, or the 403 page for its campaign's researchers; raise 404 for anyone else."""
    try:
        return training_rule_get_for_user(user=request.user, rule_id=rule_id)
    except NotFoundError as exc:
        raise Http404(exc.message) from exc
    except ForbiddenError:
        return render(request, "403.html", status=403)


@login_required
@require_http_methods(["GET"])
def training_rule_list(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """List the campaign's training rules with their last run and the runs they started."""
    campaign = _campaign_for_rules(request, campaign_id)
    if isinstance(campaign, HttpResponse):
        return campaign
    from training.api import rules_with_runs

    return render(
        request,
        "training/rule_list.html",
        {
            "campaign": campaign,
            "rules": [
                _with_method_label(rule) for rule in rules_with_runs(campaign_id=campaign.pk)
            ],
            "judgments": training_judgment_count(campaign_id=campaign.pk),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def training_rule_new(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """Create a rule: train a reward model every N judgments, or when the campaign closes."""
    campaign = _campaign_for_rules(request, campaign_id)
    if isinstance(campaign, HttpResponse):
        return campaign
    form = _rule_form(request)
    if request.method == "POST" and form.is_valid():
        try:
            rule = training_rule_create(
                campaign=campaign, created_by=request.user, **form.rule_values()
            )
        except ApplicationError as exc:
            form_apply_error(form, exc)
        else:
            messages.success(request, f"Rule {rule.pk} is saved: {_rule_sentence(rule)}.")
            return redirect("training_rule_list", campaign_id=campaign.pk)
    return render(request, "training/rule_form.html", {"campaign": campaign, "form": form, "rule": None},
                  status=400 if form.errors else 200)  # fmt: skip


@login_required
@require_http_methods(["GET", "POST"])
def training_rule_edit(request: HttpRequest, rule_id: int) -> HttpResponse:
    """Change a rule; the runs it already queued keep their settings."""
    rule = _rule_for(request, rule_id)
    if isinstance(rule, HttpResponse):
        return rule
    form = _rule_form(request, rule)
    if request.method == "POST" and form.is_valid():
        try:
            rule = training_rule_update(rule=rule, actor=request.user, **form.rule_values())
        except ApplicationError as exc:
            form_apply_error(form, exc)
        else:
            messages.success(request, f"Rule {rule.pk} is saved: {_rule_sentence(rule)}.")
            return redirect("training_rule_list", campaign_id=rule.campaign_id)
    return render(request, "training/rule_form.html", {"campaign": rule.campaign, "form": form, "rule": rule},
                  status=400 if form.errors else 200)  # fmt: skip


@login_required
@require_http_methods(["POST"])
def training_rule_set_active(request: HttpRequest, rule_id: int) -> HttpResponse:
    """Switch a rule on (`active=1`) or off (`active=0`)."""
    rule = _rule_for(request, rule_id)
    if isinstance(rule, HttpResponse):
        return rule
    active = request.POST.get("active")
    if active not in ("0", "1"):
        messages.error(request, "active: must be 1 (switch the rule on) or 0 (switch it off)")
    else:
        try:
            rule = training_rule_update(rule=rule, actor=request.user, is_active=active == "1")
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            state = (
                "on: it starts runs again"
                if rule.is_active
                else "off: it starts no run until switched on"
            )
            messages.success(request, f"Rule {rule.pk} is {state}.")
    return redirect("training_rule_list", campaign_id=rule.campaign_id)


@login_required
@require_http_methods(["POST"])
def training_rule_delete(request: HttpRequest, rule_id: int) -> HttpResponse:
    """Delete a rule; the runs it started stay."""
    rule = _rule_for(request, rule_id)
    if isinstance(rule, HttpResponse):
        return rule
    campaign_id, pk = rule.campaign_id, rule.pk
    try:
        training_rule_delete_service(rule=rule, actor=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Rule {pk} is deleted; the runs it started stay.")
    return redirect("training_rule_list", campaign_id=campaign_id)


def _with_method_label(rule: TrainingRule) -> TrainingRule:
    """Attach the name of the rule's aggregation method, as the page shows it."""
    rule.method_label = dict(Dataset.Method.choices).get(rule.dataset_method, rule.dataset_method)
    return rule


def _rule_sentence(rule: TrainingRule) -> str:
    when = (
        f"every {rule.n} judgments"
        if rule.kind == TrainingRule.Kind.EVERY_N_JUDGMENTS
        else "when the campaign closes"
    )
    state = "" if rule.is_active else " (switched off)"
    return f"a reward model trains {when}{state}"
