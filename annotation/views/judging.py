"""The judging page: the judging app (frontend) with its configuration."""

from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from annotation.core.judging import FLAG_REASONS
from annotation.models import Campaign, Role
from annotation.views.access import campaign_page


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
