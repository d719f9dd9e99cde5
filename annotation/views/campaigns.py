"""Campaign pages: the home list, the wizard, a campaign's page and status, and importing items."""

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.forms import formset_factory
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from annotation.core.importing import FORMATS
from annotation.core.judging import MAX_SCALE_POINTS
from annotation.errors import ApplicationError
from annotation.http.consumers import campaign_progress_path
from annotation.models import Campaign, Judgment, Role
from annotation.selectors import (
    campaign_list_for_user,
    campaign_live_counts,
    campaign_progress,
    membership_role,
    user_role,
)
from annotation.services.campaigns import campaign_create, campaign_set_status
from annotation.services.imports import import_commit, import_stage
from annotation.views.access import campaign_page
from annotation.views.datasets import DatasetForm
from annotation.views.forms import form_apply_error

# --- Forms ----------------------------------------------------------------------------------------


FORMAT_CHOICES = [("auto", "Detect per line"), ("arbiter", "Arbiter"), ("trl", "TRL preference"), ("hh", "Anthropic HH")]
assert [c for c, _ in FORMAT_CHOICES] == list(FORMATS)


class ImportForm(forms.Form):
    file = forms.FileField(label="JSONL file", help_text="Arbiter's format, TRL preference rows or HH transcripts.")
    format = forms.ChoiceField(choices=FORMAT_CHOICES, initial="auto")
    skip_duplicates = forms.BooleanField(
        required=False, label="Skip duplicates",
        help_text="Leave out lines that repeat an earlier line or an item already in this campaign (same "
                  "conversation and replies, ignoring Unicode normalization and outer whitespace); they are "
                  "listed. Unticked, a duplicate is a bad line and nothing is imported.",
    )


class ImportConfirmForm(forms.Form):
    token = forms.CharField(widget=forms.HiddenInput, max_length=64)


class CampaignForm(forms.Form):
    """A campaign's settings and schema, as the wizard, the settings page and a new version show them."""

    name = forms.CharField(max_length=200, label="Campaign name",
                           help_text="Shown to annotators at the top of the judging page.")
    kind = forms.ChoiceField(
        choices=Campaign.Kind.choices, initial=Campaign.Kind.PAIRWISE, widget=forms.RadioSelect,
        help_text="Pairwise: pick the better of two responses. Ranking: order 2–9 responses. "
                  "Rating: score 1–9 responses on each criterion.",
    )
    allow_ties = forms.BooleanField(required=False, initial=True, label="Allow ties",
                                    help_text="Pairwise: “about the same”; ranking: responses may share a place.")
    allow_both_bad = forms.BooleanField(required=False, initial=True, label="Allow “both bad”",
                                        help_text="Pairwise only.")
    use_strength = forms.BooleanField(required=False, initial=True, label="Ask how much better",
                                      help_text="Pairwise: slightly / clearly / much better.")
    require_rationale = forms.BooleanField(required=False, label="Require a rationale",
                                           help_text="Annotators must say briefly why.")
    allow_editing = forms.BooleanField(required=False, label="Allow rewriting the best response",
                                       help_text="The edited text is kept as a better reply (SFT data).")
    overlap = forms.IntegerField(min_value=1, max_value=100, initial=1, label="Overlap",
                                 help_text="Judgments wanted per item, each by a different annotator.")
    lease_seconds = forms.IntegerField(min_value=30, max_value=24 * 3600, initial=600, label="Lease time (seconds)",
                                       help_text="How long an item stays reserved for the annotator who opened it "
                                                 "(the judging page extends it while open).")
    gold_percent = forms.FloatField(min_value=0, max_value=100, initial=0, label="Gold checks (% of served items)",
                                    help_text="Share of served items drawn from the gold checks you import.")
    instructions = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 10}),
                                   label="Instructions for annotators",
                                   help_text="Markdown. Annotators open it with the Instructions button (I).")

    def clean_instructions(self) -> str:
        return self.cleaned_data["instructions"].replace("\r\n", "\n")  # browsers post CRLF

    @classmethod
    def initial_from(cls, campaign: Campaign) -> dict[str, Any]:
        return {
            "name": campaign.name, "kind": campaign.kind, "allow_ties": campaign.allow_ties,
            "allow_both_bad": campaign.allow_both_bad, "use_strength": campaign.use_strength,
            "require_rationale": campaign.require_rationale, "allow_editing": campaign.allow_editing,
            "overlap": campaign.overlap, "lease_seconds": campaign.lease_seconds,
            "gold_percent": round(campaign.gold_rate * 100, 2), "instructions": campaign.instructions,
        }

    def service_kwargs(self) -> dict[str, Any]:
        """Return the cleaned values as the campaign services take them (criteria not included)."""
        d = self.cleaned_data
        return {
            "name": d["name"], "kind": d["kind"], "allow_ties": d["allow_ties"], "allow_both_bad": d["allow_both_bad"],
            "use_strength": d["use_strength"], "require_rationale": d["require_rationale"],
            "allow_editing": d["allow_editing"], "overlap": d["overlap"], "lease_seconds": d["lease_seconds"],
            "gold_rate": round(d["gold_percent"] / 100, 6), "instructions": d["instructions"],
        }


# Form fields a service error may name, mapped to the form field that shows it.
SERVICE_FIELD = {"gold_rate": "gold_percent"}


class CriterionForm(forms.Form):
    """One criterion: a name, a label, a description and (for ratings) a scale with end labels."""

    name = forms.RegexField(
        regex=r"^[a-z0-9_]{1,40}$", max_length=40,
        error_messages={"invalid": "Use 1–40 lowercase letters, digits or _ (e.g. helpfulness)."},
        help_text="Lowercase id, e.g. helpfulness.",
    )
    label = forms.CharField(max_length=100, required=False, help_text="Shown to annotators.")
    description = forms.CharField(max_length=500, required=False)
    scale_min = forms.IntegerField(initial=1, label="Scale from", min_value=-100, max_value=100)
    scale_max = forms.IntegerField(initial=5, label="Scale to", min_value=-100, max_value=100)
    low_label = forms.CharField(max_length=60, required=False, label="Lowest point means",
                                help_text="e.g. Poor")
    high_label = forms.CharField(max_length=60, required=False, label="Highest point means",
                                 help_text="e.g. Excellent")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        low, high = data.get("scale_min"), data.get("scale_max")
        if low is not None and high is not None:
            if low >= high:
                self.add_error("scale_max", "Must be larger than “Scale from”.")
            elif high - low + 1 > MAX_SCALE_POINTS:
                self.add_error("scale_max", f"A scale has at most {MAX_SCALE_POINTS} points.")
        return data

    def as_criterion(self) -> dict[str, Any]:
        d = self.cleaned_data
        labels = {}
        if d.get("low_label"):
            labels[str(d["scale_min"])] = d["low_label"]
        if d.get("high_label"):
            labels[str(d["scale_max"])] = d["high_label"]
        return {"name": d["name"], "label": d.get("label") or "", "description": d.get("description") or "",
                "scale": {"min": d["scale_min"], "max": d["scale_max"], "labels": labels}}

    @staticmethod
    def initial_from(criterion: dict[str, Any]) -> dict[str, Any]:
        scale = criterion.get("scale") or {}
        labels = scale.get("labels") or {}
        low, high = scale.get("min", 1), scale.get("max", 5)
        return {"name": criterion.get("name", ""), "label": criterion.get("label", ""),
                "description": criterion.get("description", ""), "scale_min": low, "scale_max": high,
                "low_label": labels.get(str(low), ""), "high_label": labels.get(str(high), "")}


CriterionFormSet = formset_factory(CriterionForm, extra=0, can_delete=True, max_num=12, validate_max=True)


def criteria_from(formset) -> list[dict[str, Any]]:
    """Return the criteria of a valid formset, rows marked for removal left out."""
    return [f.as_criterion() for f in formset.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]


def criteria_formset(data, campaign: Campaign | None = None) -> CriterionFormSet:
    """Return the criteria formset, bound to `data` if given, showing the campaign's criteria at first."""
    initial = [CriterionForm.initial_from(c) for c in (campaign.criteria if campaign else [])]
    return CriterionFormSet(data, prefix="criteria", initial=initial or None)


# --- Pages ----------------------------------------------------------------------------------------


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


@login_required
@require_http_methods(["GET", "POST"])
def campaign_new(request: HttpRequest) -> HttpResponse:
    """The campaign wizard: kind, criteria, options, serving, instructions (live preview) and a judging preview."""
    if user_role(request.user) != Role.MANAGER:
        return render(request, "403.html", status=403)
    form = CampaignForm(request.POST or None)
    criteria = criteria_formset(request.POST or None)
    if request.method == "POST" and form.is_valid() and criteria.is_valid():
        try:
            campaign = campaign_create(created_by=request.user, criteria=criteria_from(criteria), **form.service_kwargs())
        except ApplicationError as exc:
            form_apply_error(form, exc, renames=SERVICE_FIELD, formset=criteria)
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
         "close_form": DatasetForm() if role == Role.MANAGER else None,
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
                                      format=form.cleaned_data["format"],
                                      skip_duplicates=form.cleaned_data["skip_duplicates"])
            except ApplicationError as exc:
                form_apply_error(form, exc)
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
    skipped = f" {result.skipped_count} duplicate line(s) skipped." if result.skipped_count else ""
    messages.success(request, f"Imported {result.items} items ({kinds}).{skipped}")
    return redirect("campaign_detail", campaign_id=campaign.pk)
