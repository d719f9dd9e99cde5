"""The campaign dashboard page: charts drawn by frontend/src/dashboard.ts, updated over a websocket."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from annotation.dashboard import campaign_dashboard
from annotation.http.consumers import campaign_dashboard_path
from annotation.models import Campaign, Role
from annotation.views.access import campaign_page


@campaign_page(Role.MANAGER)
@require_http_methods(["GET"])
def campaign_dashboard_page(request: HttpRequest, campaign: Campaign) -> HttpResponse:
    """Show the campaign's live dashboard to its managers; the page opens with the current payload."""
    return render(
        request,
        "annotation/campaign_dashboard.html",
        {
            "campaign": campaign,
            "dashboard": campaign_dashboard(campaign=campaign),
            "live_url": campaign_dashboard_path(campaign.pk),
            "api_url": reverse("api:campaign_dashboard", kwargs={"campaign_id": campaign.pk}),
        },
    )
