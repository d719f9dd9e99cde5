"""Dataset pages: a campaign's datasets (its managers build the next version here) and one dataset."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from annotation import exports
from annotation.core.judging import FLAG_REASONS
from annotation.core.snapshot import (
    DEFAULT_FLAG_MIN_ANNOTATORS,
    DEFAULT_METHOD,
    DEFAULT_METHOD_REASON,
    DEFAULT_MIN_CONFIDENCE,
    HELD_BACK_REASONS,
    default_params,
)
from annotation.errors import ApplicationError, ForbiddenError, NotFoundError
from annotation.models import Campaign, Dataset, Role
from annotation.selectors import (
    dataset_get_for_user,
    dataset_list_for_campaign,
    item_list_pages,
    membership_role,
)
from annotation.services.datasets import dataset_create
from annotation.views.access import campaign_page
from annotation.views.forms import form_apply_error

# --- Forms ----------------------------------------------------------------------------------------


class DatasetForm(forms.Form):
    """The method and the thresholds of a new dataset, at their defaults (`default_params`).

    Every threshold is optional: a blank one takes its default. The service validates the values
    and its errors land on the field they name.
    """

    method = forms.ChoiceField(
        choices=Dataset.Method.choices,
        initial=DEFAULT_METHOD,
        label="Aggregation method",
        help_text="Majority counts votes; Dawid–Skene and reliability weighting trust reliable annotators more. "
        + DEFAULT_METHOD_REASON,
    )
    min_judgments = forms.IntegerField(
        required=False, min_value=1, max_value=100, label="Minimum agreeing judgments",
        help_text="A pair is exported as a preference only if at least this many judgments chose its winner; "
        "otherwise it is undecided (a 1–1 split never passes 2). Default 2, or 1 on a campaign that asks "
        "one judgment per item.",
    )
    min_confidence = forms.FloatField(
        required=False, min_value=0.0, max_value=1.0, label="Minimum confidence",
        help_text=f"A pair whose consensus confidence is lower is exported undecided. Default "
        f"{DEFAULT_MIN_CONFIDENCE}: a 2–1 majority (0.67) passes, an even split does not.",
    )
    include_ties = forms.TypedChoiceField(
        required=False, choices=[("true", "Keep tie rows"), ("false", "Leave ties out")], initial="true",
        coerce=lambda v: v == "true", empty_value=None, label="Ties",
        help_text="Tie rows never reach a training export; they are kept in the comparisons export for the record.",
    )
    flag_min_annotators = forms.IntegerField(
        required=False, min_value=1, max_value=100, label="Flagged by at least",
        help_text=f"Items flagged unsafe, private data or broken by this many annotators are held back from "
        f"training. Default {DEFAULT_FLAG_MIN_ANNOTATORS}: one report of private data is reason enough to look "
        "before training on it.",
    )
    keep_flagged = forms.BooleanField(
        required=False, initial=False, label="Keep flagged items in the training exports",
    )

    def __init__(self, *args, campaign: Campaign | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        defaults = default_params(DEFAULT_METHOD, overlap=campaign.overlap if campaign else None)
        for name in ("min_judgments", "min_confidence", "flag_min_annotators"):
            self.fields[name].initial = defaults[name]
            self.fields[name].widget.attrs["placeholder"] = str(defaults[name])
        self.fields["min_confidence"].widget.attrs["step"] = "0.01"

    def params(self) -> dict:
        """The thresholds given (a blank field is left to its default)."""
        out = {name: self.cleaned_data.get(name) for name in
               ("min_judgments", "min_confidence", "include_ties", "flag_min_annotators")}
        out = {k: v for k, v in out.items() if v is not None}
        if self.cleaned_data.get("keep_flagged"):
            out["keep_flagged"] = True
        return out


# --- Pages ----------------------------------------------------------------------------------------


@campaign_page(Role.MANAGER, Role.RESEARCHER)
@require_http_methods(["GET", "POST"])
def campaign_datasets(request: HttpRequest, campaign: Campaign) -> HttpResponse:
    """List the campaign's datasets; its managers create the next version here."""
    role = membership_role(user=request.user, campaign=campaign)
    form = DatasetForm(request.POST or None, campaign=campaign) if role == Role.MANAGER else None
    if request.method == "POST":
        if form is None:
            return render(request, "403.html", status=403)
        if form.is_valid():
            try:
                dataset = dataset_create(
                    campaign=campaign, method=form.cleaned_data["method"], params=form.params(),
                    created_by=request.user,
                )
            except ApplicationError as exc:
                form_apply_error(form, exc, renames={f"params.{n}": n for n in form.fields})
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
    stats = dataset.stats or {}
    flagged = (stats.get("flagged") or {}).get("items") or []
    is_manager = membership_role(user=request.user, campaign=dataset.campaign) == Role.MANAGER
    pages = item_list_pages(campaign=dataset.campaign, item_ids=[f["item_id"] for f in flagged]) if is_manager else {}
    items_url = reverse("campaign_items", args=[dataset.campaign_id])
    flagged_rows = [
        {**f, "flags_text": ", ".join(f"{FLAG_REASONS.get(k, k)} ({n})" for k, n in f["flags"].items()),
         "url": f"{items_url}?page={pages[f['item_id']]}#item-{f['item_id']}" if f["item_id"] in pages else None}
        for f in flagged
    ]
    held = stats.get("held_back")
    held_rows = [
        {"reason": reason, "text": text, "count": held.get(reason, 0)} for reason, text in HELD_BACK_REASONS.items()
    ] if held is not None else []
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
            "stats": stats,
            "held_rows": held_rows,
            "flagged_rows": flagged_rows,
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
