from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from annotation.api.urls import urlpatterns as annotation_api_urls
from training.rounds.urls import api_urlpatterns as round_api_urls

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    # One "api" namespace for every app's API (the permission matrix and the schema rely on it).
    path("api/v1/", include(([*annotation_api_urls, *round_api_urls, path("training/", include("training.api_urls"))], "api"))),
    path("training/", include("training.urls")),
    path("", include("training.rounds.urls")),  # campaigns/<id>/rounds/new/, beside the campaign pages
    path("", include("annotation.views.urls")),
]
