"""Pages. Each view states who may open it; object access goes through the selectors."""

from functools import wraps

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from annotation import exports
from annotation.http.consumers import campaign_progress_path
from annotation.core.judging import FLAG_REASONS
from annotation.errors import ApplicationError, ForbiddenError, NotFoundError
from annotation.forms import (
    SERVICE_FIELD,
    CampaignForm,
    CloseIntoDatasetForm,
    CriterionFormSet,
    ImportConfirmForm,
    ImportForm,
    criteria_from,
)
from annotation.models import Campaign, Dataset, Judgment, Role
from annotation.selectors import (
    campaign_get_for_user,
    campaign_list_for_user,
    campaign_live_counts,
    campaign_progress,
    dataset_get_for_user,
    dataset_list_for_campaign,
    membership_role,
    user_role,
)
from annotation.services.campaigns import campaign_create, campaign_set_status
from annotation.services.datasets import dataset_create
from annotation.services.imports import import_commit, import_stage


def campaign_page(*roles: str):
    """Require login and membership with one of `roles`; pass the campaign to the view."""

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, campaign_id: int, *args, **kwargs) -> HttpResponse:
            try:
                campaign = campaign_get_for_user(user=request.user, campaign_id=campaign_id, roles=roles)
            except NotFoundError as exc:
                raise Http404(exc.message) from exc
            except ForbiddenError:
                return render(request, "403.html", status=403)
            return view(request, campaign, *args, **kwargs)

        return wrapped

    return decorator


@login_required
@require_http_methods(["GET"])
def home(request: HttpRequest) -> HttpResponse:
    role = user_role(request.user)
    rows = []
    for campaign in campaign_list_for_user(user=request.user).order_by("-created_at"):
        rows.append(
            {
                "campaign": campaign,
                "role": membership_role(user=request.user, campaign=campaign),
                "progress": campaign_progress(campaign=campaign),
            }
        )
    return render(request, "annotation/home.html", {"rows": rows, "role": role})


def apply_service_error(exc: ApplicationError, form: forms.Form, criteria=None) -> None:
    """Show a service's error on the form field it names (a criteria row's error on that row)."""
    fields = list(exc.extra.get("fields") or {})
    name = SERVICE_FIELD.get(fields[0], fields[0]) if len(fields) == 1 else None
    head, _, detail = exc.message.partition(": ")
    detail = detail if detail and fields and head.split("[")[0].split(".")[0] == fields[0] else exc.message
    if name == "criteria" and criteria is not None:
        index = _criteria_index(exc.message)
        kept = [f for f in criteria.forms if not (f.cleaned_data or {}).get("DELETE")]
        if index is not None and index < len(kept):
            kept[index].add_error(None, detail)
            return
    if name in form.fields and not form.fields[name].disabled:
        form.add_error(name, detail)
    else:
        form.add_error(None, exc.message)


def _criteria_index(message: str) -> int | None:
    if message.startswith("criteria[") and "]" in message:
        number = message[len("criteria["):message.index("]")]
        return int(number) if number.isdigit() else None
    return None


def _criteria_formset(data, campaign: Campaign | None = None) -> CriterionFormSet:
    from annotation.forms import CriterionForm

    initial = [CriterionForm.initial_from(c) for c in (campaign.criteria if campaign else [])]
    return CriterionFormSet(data, prefix="criteria", initial=initial or None)


@login_required
@require_http_methods(["GET", "POST"])
def campaign_new(request: HttpRequest) -> HttpResponse:
    """The campaign wizard: kind, criteria, options, serving, instructions (live preview) and a judging preview."""
    if user_role(request.user) != Role.MANAGER:
        return render(request, "403.html", status=403)
    form = CampaignForm(request.POST or None)
    criteria = _criteria_formset(request.POST or None)
    if request.method == "POST" and form.is_valid() and criteria.is_valid():
        try:
            campaign = campaign_create(created_by=request.user, criteria=criteria_from(criteria), **form.service_kwargs())
        except ApplicationError as exc:
            apply_service_error(exc, form, criteria)
        else:
            messages.success(request, f"Campaign “{campaign.name}” created as a draft. Import items to start.")
            return redirect("campaign_import", campaign_id=campaign.pk)
    return render(request, "annotation/campaign_form.html", {"form": form, "criteria": criteria, "mode": "new"})


@campaign_page(Role.MANAGER, Role.RESEARCHER, Role.ANNOTATOR)
@require_http_methods(["GET"])
def campaign_detail(request: HttpRequest, campaign: Campaign) -> HttpResponse:
    role = membership_role(user=request.user, campaign=campaign)
    if role == Role.ANNOTATOR:
        return redirect("campaign_judge", campaign_id=campaign.pk)
    return render(
        request,
        "annotation/campaign_detail.html",
        {"campaign": campaign, "role": role, "progress": campaign_progress(campaign=campaign),
         "transitions": _transitions(campaign),
         "live_counts": campaign_live_counts(campaign_id=campaign.pk),
         "live_url": campaign_progress_path(campaign.pk),
         "close_form": CloseIntoDatasetForm() if role == Role.MANAGER else None,
         "has_judgments": Judgment.objects.filter(campaign=campaign).exists(),
         "versions": _versions(campaign)},
    )


def _versions(campaign: Campaign) -> dict:
    return {"parent": campaign.parent, "children": list(campaign.children.order_by("version", "pk"))}


def _transitions(campaign: Campaign) -> list[tuple[str, str]]:
    from annotation.services.campaigns import _TRANSITIONS

    labels = {"active": "Activate", "paused": "Pause", "closed": "Close"}
    return [(s, labels[s]) for s in sorted(_TRANSITIONS[Campaign.Status(campaign.status)])]


@campaign_page(Role.MANAGER)
@require_http_methods(["POST"])
def campaign_status(request: HttpRequest, campaign: Campaign) -> HttpResponse:
    try:
        campaign_set_status(campaign=campaign, status=request.POST.get("status", ""), actor=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Campaign is now {request.POST.get('status')}.")
    return redirect("campaign_detail", campaign_id=campaign.pk)


@campaign_page(Role.MANAGER)
@require_http_methods(["GET", "POST"])
def campaign_import(request: HttpRequest, campaign: Campaign) -> HttpResponse:
    """Validate an upload and show its report; nothing is stored until the manager confirms."""
    from django.conf import settings

    form = ImportForm(request.POST or None, request.FILES or None)
    staged = None
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        if upload.size > settings.ARBITER_IMPORT_MAX_BYTES:
            form.add_error("file", f"The file is larger than the {settings.ARBITER_IMPORT_MAX_BYTES} byte limit.")
        else:
            try:
                staged = import_stage(campaign=campaign, upload=upload.open("rb"), filename=upload.name,
                                      format=form.cleaned_data["format"])
            except ApplicationError as exc:
                apply_service_error(exc, form)
    confirm = ImportConfirmForm(initial={"token": staged.token}) if staged and staged.ok else None
    return render(request, "annotation/campaign_import.html",
                  {"campaign": campaign, "form": form, "staged": staged, "confirm": confirm})


@campaign_page(Role.MANAGER)
@require_http_methods(["POST"])
def campaign_import_confirm(request: HttpRequest, campaign: Campaign) -> HttpResponse:
    """Commit a validated upload, all or nothing."""
    form = ImportConfirmForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Nothing was imported: the confirmation was incomplete. Upload the file again.")
        return redirect("campaign_import", campaign_id=campaign.pk)
    try:
        result = import_commit(campaign=campaign, token=form.cleaned_data["token"], actor=request.user)
    except ApplicationError as exc:
        messages.error(request, f"Nothing was imported. {exc.message}")
        return redirect("campaign_import", campaign_id=campaign.pk)
    kinds = ", ".join(f"{n} {fmt}" for fmt, n in sorted(result.formats.items()))
    messages.success(request, f"Imported {result.items} items ({kinds}).")
    return redirect("campaign_detail", campaign_id=campaign.pk)


def judge_config(request: HttpRequest, *, settings: dict, urls: dict, campaign_id: int | None, name: str) -> dict:
    """Return the judging app's configuration: the same for the real page and every preview of it."""
    return {
        "campaignId": campaign_id or 0,
        "campaignName": name,
        **urls,
        "leaseSeconds": settings["lease_seconds"],
        "csrfToken": get_token(request),
        "instructions": settings["instructions"],
        "kind": settings["kind"],
        "criteria": settings["criteria"],
        "flagReasons": [{"value": k, "label": v} for k, v in FLAG_REASONS.items()],
        "options": {
            "allowTies": settings["allow_ties"],
            "allowBothBad": settings["allow_both_bad"],
            "strength": settings["use_strength"],
            "requireRationale": settings["require_rationale"],
            "allowEditing": settings["allow_editing"],
        },
    }


def campaign_judge_settings(campaign: Campaign) -> dict:
    """Return what the judging page needs of a campaign's settings."""
    from annotation.services.campaigns import campaign_schema

    return {**campaign_schema(campaign), "instructions": campaign.instructions, "lease_seconds": campaign.lease_seconds}


@campaign_page(Role.ANNOTATOR, Role.MANAGER)
@require_http_methods(["GET"])
def campaign_judge(request: HttpRequest, campaign: Campaign) -> HttpResponse:
    urls = {
        "nextUrl": reverse("api:assignment_next", kwargs={"campaign_id": campaign.pk}),
        "submitUrlTemplate": reverse("api:judgment_submit", kwargs={"assignment_id": 0}).replace("/0/", "/{id}/"),
        "skipUrlTemplate": reverse("api:assignment_skip", kwargs={"assignment_id": 0}).replace("/0/", "/{id}/"),
        "heartbeatUrlTemplate": reverse("api:assignment_heartbeat", kwargs={"assignment_id": 0}).replace(
            "/0/", "/{id}/"
        ),
    }
    config = judge_config(request, settings=campaign_judge_settings(campaign), urls=urls, campaign_id=campaign.pk,
                          name=campaign.name)
    return render(request, "annotation/judge.html",
                  {"campaign": campaign, "kind": campaign.kind, "name": campaign.name, "judge_config": config})


# --- Datasets -------------------------------------------------------------------------------------


class DatasetForm(forms.Form):
    method = forms.ChoiceField(
        choices=Dataset.Method.choices,
        initial=Dataset.Method.DAWID_SKENE,
        label="Aggregation method",
        help_text="Majority counts votes; Dawid–Skene and reliability weighting trust reliable annotators more.",
    )


@campaign_page(Role.MANAGER, Role.RESEARCHER)
@require_http_methods(["GET", "POST"])
def campaign_datasets(request: HttpRequest, campaign: Campaign) -> HttpResponse:
    """List the campaign's datasets; its managers create the next version here."""
    role = membership_role(user=request.user, campaign=campaign)
    form = DatasetForm(request.POST or None) if role == Role.MANAGER else None
    if request.method == "POST":
        if form is None:
            return render(request, "403.html", status=403)
        if form.is_valid():
            try:
                dataset = dataset_create(
                    campaign=campaign, method=form.cleaned_data["method"], params={}, created_by=request.user
                )
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, f"Dataset v{dataset.version} is being built; this page shows when it is ready.")
                return redirect("campaign_datasets", campaign_id=campaign.pk)
    datasets = list(dataset_list_for_campaign(campaign=campaign))
    return render(
        request,
        "annotation/dataset_list.html",
        {"campaign": campaign, "role": role, "form": form, "datasets": datasets,
         "building": any(d.status == Dataset.Status.BUILDING for d in datasets)},
    )


@login_required
@require_http_methods(["GET"])
def dataset_detail(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """Show a dataset: counts, quality statistics, the leaderboard chart and the downloads."""
    try:
        dataset = dataset_get_for_user(user=request.user, dataset_id=dataset_id)
    except NotFoundError as exc:
        raise Http404(exc.message) from exc
    except ForbiddenError:
        return render(request, "403.html", status=403)
    downloads = [
        {
            "kind": spec,
            "links": [
                (fmt, reverse("api:dataset_export", kwargs={"dataset_id": dataset.pk, "kind": spec.name}) + f"?format={fmt}")
                for fmt in exports.FORMATS
            ],
        }
        for spec in exports.KINDS.values()
    ]
    return render(
        request,
        "annotation/dataset_detail.html",
        {
            "dataset": dataset,
            "campaign": dataset.campaign,
            "stats": dataset.stats or {},
            "chart": leaderboard_chart((dataset.leaderboard or {}).get("rows", [])),
            "downloads": downloads,
            "card_url": reverse("api:dataset_card", kwargs={"dataset_id": dataset.pk}),
        },
    )


def leaderboard_chart(rows: list[dict], *, width: int = 720, label_width: int = 200, row_height: int = 30) -> dict:
    """Return the geometry of the leaderboard chart: one row per model, a dot at the score and a bar for its CI.

    Drawn as inline SVG by the template, so it needs no script and no CDN.
    """
    if not rows:
        return {"rows": [], "ticks": [], "width": width, "height": 0}
    low = min(r["ci_low"] for r in rows)
    high = max(r["ci_high"] for r in rows)
    pad = max((high - low) * 0.08, 5.0)
    low, high = low - pad, high + pad
    plot_left, plot_right = label_width + 10, width - 20
    top = 10

    def x(value: float) -> float:
        return round(plot_left + (value - low) / (high - low) * (plot_right - plot_left), 1)

    out = []
    for k, r in enumerate(rows):
        y = top + k * row_height + row_height / 2
        out.append({**r, "y": y, "text_y": y + 4, "x": x(r["score"]), "x_low": x(r["ci_low"]),
                    "bar_width": max(x(r["ci_high"]) - x(r["ci_low"]), 1.0), "bar_y": y - 3})
    step = (high - low) / 4
    axis_y = top + len(rows) * row_height + 4
    ticks = [{"x": x(low + i * step), "label": f"{low + i * step:.0f}"} for i in range(5)]
    return {"rows": out, "ticks": ticks, "width": width, "height": axis_y + 24, "axis_y": axis_y,
            "tick_y": axis_y + 16, "plot_left": plot_left, "plot_right": plot_right, "top": top}
