"""Pages. Each view states who may open it; object access goes through the selectors."""

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from annotation.consumers import campaign_progress_path
from annotation.errors import ApplicationError, ForbiddenError, NotFoundError
from annotation.forms import CampaignForm, ImportForm
from annotation.judging import FLAG_REASONS
from annotation.models import Campaign, Role
from annotation.selectors import (
    campaign_get_for_user,
    campaign_list_for_user,
    campaign_live_counts,
    campaign_progress,
    membership_role,
    user_role,
)
from annotation.services.campaigns import campaign_create, campaign_set_status
from annotation.services.imports import ImportRejected, items_import


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


@login_required
@require_http_methods(["GET", "POST"])
def campaign_new(request: HttpRequest) -> HttpResponse:
    if user_role(request.user) != Role.MANAGER:
        return render(request, "403.html", status=403)
    form = CampaignForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            campaign = campaign_create(created_by=request.user, **form.cleaned_data)
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Campaign “{campaign.name}” created. Import items to start.")
            return redirect("campaign_import", campaign_id=campaign.pk)
    return render(request, "annotation/campaign_new.html", {"form": form})


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
         "live_url": campaign_progress_path(campaign.pk)},
    )


def _transitions(campaign: Campaign) -> list[tuple[str, str]]:
    from annotation.services.campaigns import _TRANSITIONS

    labels = {"active": "Activate", "paused": "Pause", "closed": "Close"}
    return [(s, labels[s]) for s in sorted(_TRANSITIONS[Campaign.Status(campaign.status)])]


@campaign_page(Role.MANAGER)
@require_http_methods(["POST"])
def campaign_status(request: HttpRequest, campaign: Campaign) -> HttpResponse:
    try:
        campaign_set_status(campaign=campaign, status=request.POST.get("status", ""))
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Campaign is now {request.POST.get('status')}.")
    return redirect("campaign_detail", campaign_id=campaign.pk)


@campaign_page(Role.MANAGER)
@require_http_methods(["GET", "POST"])
def campaign_import(request: HttpRequest, campaign: Campaign) -> HttpResponse:
    form = ImportForm(request.POST or None, request.FILES or None)
    report = None
    if request.method == "POST" and form.is_valid():
        try:
            result = items_import(
                campaign=campaign, lines=form.cleaned_data["file"].open("rb"), format=form.cleaned_data["format"]
            )
        except ImportRejected as exc:
            report = exc
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            kinds = ", ".join(f"{n} {fmt}" for fmt, n in sorted(result.formats.items()))
            messages.success(request, f"Imported {result.items} items ({kinds}).")
            return redirect("campaign_detail", campaign_id=campaign.pk)
    return render(request, "annotation/campaign_import.html", {"campaign": campaign, "form": form, "report": report})


@campaign_page(Role.ANNOTATOR, Role.MANAGER)
@require_http_methods(["GET"])
def campaign_judge(request: HttpRequest, campaign: Campaign) -> HttpResponse:
    config = {
        "campaignId": campaign.pk,
        "campaignName": campaign.name,
        "nextUrl": reverse("api:assignment_next", kwargs={"campaign_id": campaign.pk}),
        "submitUrlTemplate": reverse("api:judgment_submit", kwargs={"assignment_id": 0}).replace("/0/", "/{id}/"),
        "skipUrlTemplate": reverse("api:assignment_skip", kwargs={"assignment_id": 0}).replace("/0/", "/{id}/"),
        "heartbeatUrlTemplate": reverse("api:assignment_heartbeat", kwargs={"assignment_id": 0}).replace(
            "/0/", "/{id}/"
        ),
        "leaseSeconds": campaign.lease_seconds,
        "csrfToken": get_token(request),
        "instructions": campaign.instructions,
        "kind": campaign.kind,
        "criteria": campaign.criteria,
        "flagReasons": [{"value": k, "label": v} for k, v in FLAG_REASONS.items()],
        "options": {
            "allowTies": campaign.allow_ties,
            "allowBothBad": campaign.allow_both_bad,
            "strength": campaign.use_strength,
            "requireRationale": campaign.require_rationale,
            "allowEditing": campaign.allow_editing,
        },
    }
    return render(request, "annotation/judge.html", {"campaign": campaign, "judge_config": config})
