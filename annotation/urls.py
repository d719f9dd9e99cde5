from django.urls import path

from annotation import views

urlpatterns = [
    path("", views.home, name="home"),
    path("campaigns/new/", views.campaign_new, name="campaign_new"),
    path("campaigns/<int:campaign_id>/", views.campaign_detail, name="campaign_detail"),
    path("campaigns/<int:campaign_id>/status/", views.campaign_status, name="campaign_status"),
    path("campaigns/<int:campaign_id>/import/", views.campaign_import, name="campaign_import"),
    path("campaigns/<int:campaign_id>/judge/", views.campaign_judge, name="campaign_judge"),
    path("campaigns/<int:campaign_id>/datasets/", views.campaign_datasets, name="campaign_datasets"),
    path("datasets/<int:dataset_id>/", views.dataset_detail, name="dataset_detail"),
]
