"""Routes of next-round generation, under a campaign's own paths (not under /training/).

`config.urls` includes `urlpatterns` beside the annotation pages and `api_urlpatterns` in the
"api" namespace under /api/v1/, so the paths and names are those of every other campaign route.
"""

from django.urls import path

from training.rounds import api, views

urlpatterns = [
    path("campaigns/<int:campaign_id>/rounds/new/", views.campaign_round_new, name="campaign_round_new"),
]

api_urlpatterns = [
    path("campaigns/<int:campaign_id>/rounds/", api.CampaignRoundCreateApi.as_view(), name="campaign_round_create"),
]
