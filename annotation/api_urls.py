from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from annotation import api, api_dashboard

app_name = "api"

urlpatterns = [
    path("auth/token/", api.AuthTokenApi.as_view(), name="auth_token"),
    path("campaigns/", api.CampaignListApi.as_view(), name="campaign_list"),
    path("campaigns/create/", api.CampaignCreateApi.as_view(), name="campaign_create"),
    path("campaigns/<int:campaign_id>/", api.CampaignDetailApi.as_view(), name="campaign_detail"),
    path("campaigns/<int:campaign_id>/status/", api.CampaignStatusApi.as_view(), name="campaign_status"),
    path("campaigns/<int:campaign_id>/members/", api.CampaignMemberAddApi.as_view(), name="campaign_member_add"),
    path("campaigns/<int:campaign_id>/import/", api.CampaignImportApi.as_view(), name="campaign_import"),
    path("campaigns/<int:campaign_id>/next/", api.AssignmentNextApi.as_view(), name="assignment_next"),
    path("assignments/<int:assignment_id>/submit/", api.JudgmentSubmitApi.as_view(), name="judgment_submit"),
    path("assignments/<int:assignment_id>/skip/", api.AssignmentSkipApi.as_view(), name="assignment_skip"),
    path("assignments/<int:assignment_id>/heartbeat/", api.AssignmentHeartbeatApi.as_view(), name="assignment_heartbeat"),
    path(
        "campaigns/<int:campaign_id>/dashboard/",
        api_dashboard.CampaignDashboardApi.as_view(),
        name="campaign_dashboard",
    ),
    path("campaigns/<int:campaign_id>/datasets/", api.DatasetListApi.as_view(), name="dataset_list"),
    path("campaigns/<int:campaign_id>/datasets/create/", api.DatasetCreateApi.as_view(), name="dataset_create"),
    path(
        "campaigns/<int:campaign_id>/judgments/export/",
        api.CampaignJudgmentsExportApi.as_view(),
        name="campaign_judgments_export",
    ),
    # The manager's console.
    path("campaigns/<int:campaign_id>/update/", api.CampaignUpdateApi.as_view(), name="campaign_update"),
    path("campaigns/<int:campaign_id>/new-version/", api.CampaignNewVersionApi.as_view(), name="campaign_new_version"),
    path("campaigns/<int:campaign_id>/close-into-dataset/", api.CampaignCloseIntoDatasetApi.as_view(),
         name="campaign_close_into_dataset"),
    path("campaigns/<int:campaign_id>/import/validate/", api.CampaignImportValidateApi.as_view(),
         name="campaign_import_validate"),
    path("campaigns/<int:campaign_id>/items/", api.CampaignItemListApi.as_view(), name="campaign_items"),
    path("campaigns/<int:campaign_id>/members/list/", api.CampaignMemberListApi.as_view(), name="campaign_member_list"),
    path("campaigns/<int:campaign_id>/members/<int:user_id>/update/", api.CampaignMemberUpdateApi.as_view(),
         name="campaign_member_update"),
    path("campaigns/<int:campaign_id>/members/<int:user_id>/remove/", api.CampaignMemberRemoveApi.as_view(),
         name="campaign_member_remove"),
    path("campaigns/<int:campaign_id>/invites/", api.CampaignInviteListApi.as_view(), name="campaign_invite_list"),
    path("campaigns/<int:campaign_id>/invites/create/", api.CampaignInviteCreateApi.as_view(),
         name="campaign_invite_create"),
    path("campaigns/<int:campaign_id>/invites/<int:invite_id>/revoke/", api.CampaignInviteRevokeApi.as_view(),
         name="campaign_invite_revoke"),
    path("invites/<str:token>/accept/", api.InviteAcceptApi.as_view(), name="invite_accept"),
    path("campaigns/<int:campaign_id>/audit/", api.CampaignAuditListApi.as_view(), name="campaign_audit"),
    path("datasets/<int:dataset_id>/", api.DatasetDetailApi.as_view(), name="dataset_detail"),
    path("datasets/<int:dataset_id>/leaderboard/", api.DatasetLeaderboardApi.as_view(), name="dataset_leaderboard"),
    path("datasets/<int:dataset_id>/card/", api.DatasetCardApi.as_view(), name="dataset_card"),
    path("datasets/<int:dataset_id>/export/<slug:kind>/", api.DatasetExportApi.as_view(), name="dataset_export"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
]
