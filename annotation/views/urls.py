from django.urls import path

from annotation.views import campaigns, console, dashboard, datasets, judging, people, preview

urlpatterns = [
    path("", campaigns.home, name="home"),
    path("campaigns/new/", campaigns.campaign_new, name="campaign_new"),
    path("campaigns/<int:campaign_id>/", campaigns.campaign_detail, name="campaign_detail"),
    path("campaigns/<int:campaign_id>/status/", campaigns.campaign_status, name="campaign_status"),
    path("campaigns/<int:campaign_id>/import/", campaigns.campaign_import, name="campaign_import"),
    path("campaigns/<int:campaign_id>/judge/", judging.campaign_judge, name="campaign_judge"),
    path("campaigns/<int:campaign_id>/datasets/", datasets.campaign_datasets, name="campaign_datasets"),
    path(
        "campaigns/<int:campaign_id>/dashboard/", dashboard.campaign_dashboard_page, name="campaign_dashboard"
    ),
    path("datasets/<int:dataset_id>/", datasets.dataset_detail, name="dataset_detail"),
    # The manager's console: import confirmation, previews, settings, versions, items, people, audit.
    path("campaigns/<int:campaign_id>/import/confirm/", campaigns.campaign_import_confirm, name="campaign_import_confirm"),
    path("campaigns/preview/", preview.campaign_preview_draft, name="campaign_preview_draft"),
    path("campaigns/<int:campaign_id>/preview/", preview.campaign_preview, name="campaign_preview"),
    path("preview/<str:token>/next/", preview.preview_next, name="preview_next"),
    path("preview/<str:token>/<slug:action>/<int:item_id>/", preview.preview_action, name="preview_action"),
    path("campaigns/<int:campaign_id>/settings/", console.campaign_settings_page, name="campaign_settings"),
    path("campaigns/<int:campaign_id>/new-version/", console.campaign_new_version_page,
         name="campaign_new_version"),
    path("campaigns/<int:campaign_id>/close/", console.campaign_close_page, name="campaign_close"),
    path("campaigns/<int:campaign_id>/items/", console.campaign_items_page, name="campaign_items"),
    path("campaigns/<int:campaign_id>/audit/", console.campaign_audit_page, name="campaign_audit"),
    path("campaigns/<int:campaign_id>/people/", people.campaign_people_page, name="campaign_people"),
    path("campaigns/<int:campaign_id>/people/add/", people.campaign_member_add_page, name="campaign_member_add"),
    path("campaigns/<int:campaign_id>/people/<int:user_id>/", people.campaign_member_update_page,
         name="campaign_member_update"),
    path("campaigns/<int:campaign_id>/invites/", people.campaign_invite_create_page,
         name="campaign_invite_create"),
    path("campaigns/<int:campaign_id>/invites/<int:invite_id>/revoke/", people.campaign_invite_revoke_page,
         name="campaign_invite_revoke"),
    path("invite/<str:token>/", people.invite_accept_page, name="invite_accept"),
]
