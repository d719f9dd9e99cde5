"""Dataset pages: a campaign's datasets (its managers build the next version here) and one dataset."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from annotation import exports
from annotation.errors import ApplicationError, ForbiddenError, NotFoundError
from annotation.models import Campaign, Dataset, Role
from annotation.selectors import dataset_get_for_user, dataset_list_for_campaign, membership_role
from annotation.services.datasets import dataset_create
from annotation.views.access import campaign_page

# --- Forms ----------------------------------------------------------------------------------------


class DatasetForm(forms.Form):
    method = forms.ChoiceField(
        choices=Dataset.Method.choices,
        initial=Dataset.Method.DAWID_SKENE,
        label="Aggregation method",
        help_text="Majority counts votes; Dawid–Skene and reliability weighting trust reliable annotators more.",
    )


# --- Pages ----------------------------------------------------------------------------------------


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
