"""The manager's console pages: settings, new versions, close into a dataset, items, audit log."""

import json

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from annotation.errors import ApplicationError
from annotation.models import Campaign, Dataset, Judgment, Role
from annotation.selectors import (
    AUDIT_PER_PAGE,
    ITEM_FILTERS,
    campaign_consensus_settings,
    item_page_for_campaign,
)
from annotation.services.audit import audit_list_for_campaign
from annotation.services.campaigns import (
    COPY_ITEMS,
    SCHEMA_FIELDS,
    campaign_close_into_dataset,
    campaign_new_version,
    campaign_update,
)
from annotation.views.access import campaign_page
from annotation.views.campaigns import SERVICE_FIELD, CampaignForm, criteria_formset, criteria_from
from annotation.views.datasets import DatasetForm
from annotation.views.forms import form_apply_error

# --- Forms ----------------------------------------------------------------------------------------


class NewVersionForm(forms.Form):
    copy_items = forms.ChoiceField(
        choices=list(COPY_ITEMS.items()), initial="unjudged", widget=forms.RadioSelect,
        label="Items to carry over",
        help_text="Judged items keep their judgments in this version, which is closed; gold checks always come along.",
    )


# --- Pages ----------------------------------------------------------------------------------------


# Form fields that belong to the schema (the criteria are a formset of their own).
SCHEMA_FORM_FIELDS = [f for f in SCHEMA_FIELDS if f != "criteria"]


@campaign_page(Role.MANAGER)
@require_http_methods(["GET", "POST"])
def campaign_settings_page(request: HttpRequest, campaign: Campaign) -> HttpResponse:
    """Edit the campaign's settings; the schema too while nothing is judged (then: a new version)."""
    judged = Judgment.objects.filter(campaign=campaign).count()
    closed = campaign.status == Campaign.Status.CLOSED
    form = CampaignForm(request.POST or None, initial=CampaignForm.initial_from(campaign))
    criteria = criteria_formset(request.POST if request.method == "POST" and not judged else None, campaign)
    if judged or closed:
        for name in SCHEMA_FORM_FIELDS:
            form.fields[name].disabled = True
    if closed:
        for field in form.fields.values():
            field.disabled = True
    if request.method == "POST" and not closed and form.is_valid() and (judged or criteria.is_valid()):
        kwargs = form.service_kwargs()
        if judged:
            kwargs = {k: v for k, v in kwargs.items() if k not in SCHEMA_FIELDS}
        else:
            kwargs["criteria"] = criteria_from(criteria)
        try:
            campaign_update(campaign=campaign, actor=request.user, **kwargs)
        except ApplicationError as exc:
            form_apply_error(form, exc, renames=SERVICE_FIELD, formset=criteria)
        else:
            messages.success(request, "Settings saved.")
            return redirect("campaign_settings", campaign_id=campaign.pk)
    return render(request, "annotation/campaign_form.html", {
        "form": form, "criteria": criteria, "mode": "settings", "campaign": campaign, "judged": judged,
        "closed": closed,
    })


@campaign_page(Role.MANAGER)
@require_http_methods(["GET", "POST"])
def campaign_new_version_page(request: HttpRequest, campaign: Campaign) -> HttpResponse:
    """Start the next version with a changed schema; this version is closed."""
    closed = campaign.status == Campaign.Status.CLOSED
    form = CampaignForm(request.POST or None, initial=CampaignForm.initial_from(campaign))
    criteria = criteria_formset(request.POST or None, campaign)
    version_form = NewVersionForm(request.POST or None)
    if request.method == "POST" and not closed and form.is_valid() and criteria.is_valid() and version_form.is_valid():
        try:
            new = campaign_new_version(campaign=campaign, actor=request.user, criteria=criteria_from(criteria),
                                       copy_items=version_form.cleaned_data["copy_items"], **form.service_kwargs())
        except ApplicationError as exc:
            form_apply_error(form, exc, renames=SERVICE_FIELD, formset=criteria)
        else:
            messages.success(request, f"Version {new.version} started with {new.item_count} items; "
                                      f"version {campaign.version} is closed.")
            return redirect("campaign_detail", campaign_id=new.pk)
    return render(request, "annotation/campaign_form.html", {
        "form": form, "criteria": criteria, "mode": "new_version", "campaign": campaign,
        "version_form": version_form, "closed": closed,
    })


@campaign_page(Role.MANAGER)
@require_http_methods(["POST"])
def campaign_close_page(request: HttpRequest, campaign: Campaign) -> HttpResponse:
    """Close the campaign and build its dataset in one step, then show the dataset."""
    form = DatasetForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose an aggregation method to close the campaign into a dataset.")
        return redirect("campaign_detail", campaign_id=campaign.pk)
    try:
        dataset = campaign_close_into_dataset(campaign=campaign, actor=request.user, method=form.cleaned_data["method"])
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("campaign_detail", campaign_id=campaign.pk)
    messages.success(request, f"The campaign is closed; dataset v{dataset.version} is being built.")
    return redirect("dataset_detail", dataset_id=dataset.pk)


# --- Items: judgments and consensus in words --------------------------------------------------------


def _answer_text(judgment: Judgment, labels: dict[int, str]) -> str:
    """Describe a judgment in words, naming responses by their position in the item (Response 1, 2...)."""
    name = lambda rid: labels.get(int(rid), f"response {rid}")  # noqa: E731
    answer = judgment.answer or {}
    if judgment.outcome == Judgment.Outcome.PREFERRED:
        strength = {1: " (slightly)", 2: " (clearly)", 3: " (much better)"}.get(judgment.strength or 0, "")
        text = f"{name(judgment.preferred_response_id)} preferred{strength}"
    elif judgment.outcome == Judgment.Outcome.TIE:
        text = "Tie"
    elif judgment.outcome == Judgment.Outcome.BOTH_BAD:
        text = "Both bad"
    elif judgment.outcome == Judgment.Outcome.RANKED:
        text = " > ".join(" = ".join(name(r) for r in group) for group in answer.get("ranking", []))
    else:
        text = "; ".join(
            f"{name(rid)}: " + ", ".join(f"{c} {v}" for c, v in scores.items())
            for rid, scores in (answer.get("ratings") or {}).items()
        )
    if answer.get("criteria"):
        text += " · " + ", ".join(
            f"{c}: {'tie' if w == 'tie' else name(w)}" for c, w in answer["criteria"].items()
        )
    if answer.get("flags"):
        text += " · flagged " + ", ".join(answer["flags"])
    return text


_UNDECIDED = {
    "too_few_judgments": "too few judgments agree",
    "below_confidence": "confidence below the threshold",
}


def _consensus_text(c, labels: dict[int, str]) -> str:
    if c.outcome == "undecided":
        return f"Undecided ({_UNDECIDED.get(c.reason, c.reason)})"
    if len(c.order) == 2:
        return "Tie" if c.outcome == "tie" else f"{labels[c.order[0]]} preferred"
    return " > ".join(labels[r] for r in c.order)


@campaign_page(Role.MANAGER)
@require_http_methods(["GET"])
def campaign_items_page(request: HttpRequest, campaign: Campaign) -> HttpResponse:
    """List the campaign's items with their responses, judgments (by annotator) and live consensus."""
    show = request.GET.get("show", "all")
    if show not in ITEM_FILTERS:
        show = "all"
    listed = item_page_for_campaign(campaign=campaign, show=show, page=request.GET.get("page"))
    rows = []
    for row in listed.rows:
        responses = [link.response for link in row.links]
        labels = {r.pk: f"Response {k + 1}" for k, r in enumerate(responses)}
        c = row.consensus
        rows.append({
            "item": row.item,
            "prompt": row.item.prompt.messages,
            "responses": [{"label": labels[r.pk], "response": r} for r in responses],
            "judgments": [
                {"judgment": j, "text": _answer_text(j, labels), "excluded": j.annotator_id in listed.excluded,
                 "superseded": j.pk in listed.superseded}
                for j in row.judgments
            ],
            "consensus": None if c is None else {
                "text": _consensus_text(c, labels), "agreement": c.agreement, "judgments": c.judgments,
                "outcome": c.outcome,
            },
        })
    page = listed.page
    method, params = campaign_consensus_settings(campaign=campaign)
    return render(request, "annotation/campaign_items.html", {
        "campaign": campaign, "page": page, "rows": rows, "show": show,
        "consensus_method": Dataset.Method(method).label, "consensus_params": params,
        "filters": [(k, label) for k, (label, _) in ITEM_FILTERS.items()],
    })


@campaign_page(Role.MANAGER)
@require_http_methods(["GET"])
def campaign_audit_page(request: HttpRequest, campaign: Campaign) -> HttpResponse:
    """The campaign's audit log: who did what, when, with the values before and after."""
    page = Paginator(audit_list_for_campaign(campaign=campaign), AUDIT_PER_PAGE).get_page(request.GET.get("page"))
    # Key/value pairs, not dicts: a stored key such as "items" must not shadow dict methods in templates.
    rows = [{"entry": e, "before": _pairs(e.before), "after": _pairs(e.after)} for e in page.object_list]
    return render(request, "annotation/campaign_audit.html", {"campaign": campaign, "page": page, "rows": rows})


def _pairs(values) -> list[tuple[str, str]]:
    if not isinstance(values, dict):
        return [] if values is None else [("value", str(values))]
    return [(k, v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)) for k, v in values.items()]
