from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from annotation.api import campaigns, console, dashboard, datasets, judging, people

app_name = "api"

urlpatterns = [
    path("auth/token/", people.AuthTokenApi.as_view(), name="auth_token"),
    path("campaigns/", campaigns.CampaignListApi.as_view(), name="campaign_list"),
    path("campaigns/create/", campaigns.CampaignCreateApi.as_view(), name="campaign_create"),
    path("campaigns/<int:campaign_id>/", campaigns.CampaignDetailApi.as_view(), name="campaign_detail"),
    path("campaigns/<int:campaign_id>/status/", campaigns.CampaignStatusApi.as_view(), name="campaign_status"),
    path("campaigns/<int:campaign_id>/members/", people.CampaignMemberAddApi.as_view(), name="campaign_member_add"),
    path("campaigns/<int:campaign_id>/import/", campaigns.CampaignImportApi.as_view(), name="campaign_import"),
    path("campaigns/<int:campaign_id>/next/", judging.AssignmentNextApi.as_view(), name="assignment_next"),
    path("assignments/<int:assignment_id>/submit/", judging.JudgmentSubmitApi.as_view(), name="judgment_submit"),
    path("assignments/<int:assignment_id>/skip/", judging.AssignmentSkipApi.as_view(), name="assignment_skip"),
    path("assignments/<int:assignment_id>/heartbeat/", judging.AssignmentHeartbeatApi.as_view(), name="assignment_heartbeat"),
    path(
        "campaigns/<int:campaign_id>/dashboard/",
        dashboard.CampaignDashboardApi.as_view(),
        name="campaign_dashboard",
    ),
    path("campaigns/<int:campaign_id>/datasets/", datasets.DatasetListApi.as_view(), name="dataset_list"),
    path("campaigns/<int:campaign_id>/datasets/create/", datasets.DatasetCreateApi.as_view(), name="dataset_create"),
    path(
        "campaigns/<int:campaign_id>/judgments/export/",
        datasets.CampaignJudgmentsExportApi.as_view(),
        name="campaign_judgments_export",
    ),
    # The manager's console.
    path("campaigns/<int:campaign_id>/update/", console.CampaignUpdateApi.as_view(), name="campaign_update"),
    path("campaigns/<int:campaign_id>/new-version/", console.CampaignNewVersionApi.as_view(), name="campaign_new_version"),
    path("campaigns/<int:campaign_id>/close-into-dataset/", console.CampaignCloseIntoDatasetApi.as_view(),
         name="campaign_close_into_dataset"),
    path("campaigns/<int:campaign_id>/import/validate/", console.CampaignImportValidateApi.as_view(),
         name="campaign_import_validate"),
    path("campaigns/<int:campaign_id>/items/", console.CampaignItemListApi.as_view(), name="campaign_items"),
    path("campaigns/<int:campaign_id>/members/list/", people.CampaignMemberListApi.as_view(), name="campaign_member_list"),
    path("campaigns/<int:campaign_id>/members/<int:user_id>/update/", people.CampaignMemberUpdateApi.as_view(),
         name="campaign_member_update"),
    path("campaigns/<int:campaign_id>/members/<int:user_id>/remove/", people.CampaignMemberRemoveApi.as_view(),
         name="campaign_member_remove"),
    path("campaigns/<int:campaign_id>/invites/", people.CampaignInviteListApi.as_view(), name="campaign_invite_list"),
    path("campaigns/<int:campaign_id>/invites/create/", people.CampaignInviteCreateApi.as_view(),
         name="campaign_invite_create"),
    path("campaigns/<int:campaign_id>/invites/<int:invite_id>/revoke/", people.CampaignInviteRevokeApi.as_view(),
         name="campaign_invite_revoke"),
    path("invites/<str:token>/accept/", people.InviteAcceptApi.as_view(), name="invite_accept"),
    path("campaigns/<int:campaign_id>/audit/", console.CampaignAuditListApi.as_view(), name="campaign_audit"),
    path("datasets/<int:dataset_id>/", datasets.DatasetDetailApi.as_view(), name="dataset_detail"),
    path("datasets/<int:dataset_id>/leaderboard/", datasets.DatasetLeaderboardApi.as_view(), name="dataset_leaderboard"),
    path("datasets/<int:dataset_id>/card/", datasets.DatasetCardApi.as_view(), name="dataset_card"),
    path("datasets/<int:dataset_id>/export/<slug:kind>/", datasets.DatasetExportApi.as_view(), name="dataset_export"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
]
