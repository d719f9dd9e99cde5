"""Websocket routes, under /ws/."""

from django.urls import path

from annotation.consumers import CampaignProgressConsumer

# Keep in step with annotation.consumers.campaign_progress_path.
websocket_urlpatterns: list = [
    path("ws/campaigns/<int:campaign_id>/progress/", CampaignProgressConsumer.as_asgi()),
]
