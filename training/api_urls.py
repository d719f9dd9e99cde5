"""Training API routes, included under /api/v1/training/ in the project's `api` namespace."""

from django.urls import path

from training import api

urlpatterns = [
    path("runs/", api.TrainingRunListApi.as_view(), name="training_run_list"),
    path("runs/create/", api.TrainingRunCreateApi.as_view(), name="training_run_create"),
    path("runs/<int:run_id>/", api.TrainingRunDetailApi.as_view(), name="training_run_detail"),
    path(
        "runs/<int:run_id>/cancel/", api.TrainingRunCancelApi.as_view(), name="training_run_cancel"
    ),
    path(
        "runs/<int:run_id>/resume/", api.TrainingRunResumeApi.as_view(), name="training_run_resume"
    ),
    path("runs/<int:run_id>/score/", api.TrainingRunScoreApi.as_view(), name="training_run_score"),
    path(
        "campaigns/<int:campaign_id>/rules/",
        api.TrainingRuleListApi.as_view(),
        name="training_rule_list",
    ),
    path(
        "campaigns/<int:campaign_id>/rules/create/",
        api.TrainingRuleCreateApi.as_view(),
        name="training_rule_create",
    ),
    path("rules/<int:rule_id>/", api.TrainingRuleDetailApi.as_view(), name="training_rule_detail"),
    path(
        "rules/<int:rule_id>/update/",
        api.TrainingRuleUpdateApi.as_view(),
        name="training_rule_update",
    ),
    path(
        "rules/<int:rule_id>/delete/",
        api.TrainingRuleDeleteApi.as_view(),
        name="training_rule_delete",
    ),
]
