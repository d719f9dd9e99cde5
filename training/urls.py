from django.urls import path

from training import views

urlpatterns = [
    path("", views.training_run_list, name="training_run_list"),
    path("new/", views.training_run_new, name="training_run_new"),
    path("runs/<int:run_id>/", views.training_run_detail, name="training_run_detail"),
]
