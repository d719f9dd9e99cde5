from django.urls import path

from annotation import (
    views,
    views_dashboard,
    views_manage,
    views_people,
    views_preview,
)

urlpatterns = [
    path("", views.home, name="home"),
    path("campaigns/new/", views.campaign_new, name="campaign_new"),
    path("campaigns/<int:campaign_id>/", views.campaign_detail, name="campaign_detail"),
    path("campaigns/<int:campaign_id>/status/", views.campaign_status, name="campaign_status"),
    path("campaigns/<int:campaign_id>/import/", views.campaign_import, name="campaign_import"),
    path("campaigns/<int:campaign_id>/judge/", views.campaign_judge, name="campaign_judge"),
    path("campaigns/<int:campaign_id>/datasets/", views.campaign_datasets, name="campaign_datasets"),
    path(
        "campaigns/<int:campaign_id>/dashboard/", views_dashboard.campaign_dashboard_page, name="campaign_dashboard"
    ),
    path("datasets/<int:dataset_id>/", views.dataset_detail, name="dataset_detail"),
    # The manager's console: import confirmation, previews, settings, versions, items, people, audit.
    path("campaigns/<int:campaign_id>/import/confirm/", views.campaign_import_confirm, name="campaign_import_confirm"),
    path("campaigns/preview/", views_preview.campaign_preview_draft, name="campaign_preview_draft"),
    path("campaigns/<int:campaign_id>/preview/", views_preview.campaign_preview, name="campaign_preview"),
    path("preview/<str:token>/next/", views_preview.preview_next, name="preview_next"),
    path("preview/<str:token>/<slug:action>/<int:item_id>/", views_preview.preview_action, name="preview_action"),
    path("campaigns/<int:campaign_id>/settings/", views_manage.campaign_settings_page, name="campaign_settings"),
    path("campaigns/<int:campaign_id>/new-version/", views_manage.campaign_new_version_page,
         name="campaign_new_version"),
    path("campaigns/<int:campaign_id>/close/", views_manage.campaign_close_page, name="campaign_close"),
    path("campaigns/<int:campaign_id>/items/", views_manage.campaign_items_page, name="campaign_items"),
    path("campaigns/<int:campaign_id>/audit/", views_manage.campaign_audit_page, name="campaign_audit"),
    path("campaigns/<int:campaign_id>/people/", views_people.campaign_people_page, name="campaign_people"),
    path("campaigns/<int:campaign_id>/people/add/", views_people.campaign_member_add_page, name="campaign_member_add"),
    path("campaigns/<int:campaign_id>/people/<int:user_id>/", views_people.campaign_member_update_page,
         name="campaign_member_update"),
    path("campaigns/<int:campaign_id>/invites/", views_people.campaign_invite_create_page,
         name="campaign_invite_create"),
    path("campaigns/<int:campaign_id>/invites/<int:invite_id>/revoke/", views_people.campaign_invite_revoke_page,
         name="campaign_invite_revoke"),
    path("invite/<str:token>/", views_people.invite_accept_page, name="invite_accept"),
]
