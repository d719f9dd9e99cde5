from django.urls import path

from training import views

urlpatterns = [
    path("", views.training_run_list, name="training_run_list"),
    path("new/", views.training_run_new, name="training_run_new"),
    path("runs/<int:run_id>/", views.training_run_detail, name="training_run_detail"),
    path("campaigns/<int:campaign_id>/rules/", views.training_rule_list, name="training_rule_list"),
    path(
        "campaigns/<int:campaign_id>/rules/new/", views.training_rule_new, name="training_rule_new"
    ),
    path("rules/<int:rule_id>/edit/", views.training_rule_edit, name="training_rule_edit"),
    path(
        "rules/<int:rule_id>/active/",
        views.training_rule_set_active,
        name="training_rule_set_active",
    ),
    path("rules/<int:rule_id>/delete/", views.training_rule_delete, name="training_rule_delete"),
]
