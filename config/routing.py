"""Websocket routes, under /ws/."""

from django.urls import path

from annotation.http.consumers import CampaignDashboardConsumer, CampaignProgressConsumer
from training.consumers import TrainingRunConsumer

# Keep in step with annotation.http.consumers.campaign_progress_path and campaign_dashboard_path.
websocket_urlpatterns: list = [
    path("ws/campaigns/<int:campaign_id>/progress/", CampaignProgressConsumer.as_asgi()),
    path("ws/campaigns/<int:campaign_id>/dashboard/", CampaignDashboardConsumer.as_asgi()),
    # Keep in step with training.consumers.run_live_path.
    path("ws/training/runs/<int:run_id>/", TrainingRunConsumer.as_asgi()),
]
