"""URLs: pages, API v1 under /api/v1/, OpenAPI schema and docs, health."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

from controlplane import views
from controlplane.api.urls import router
from controlplane.auth_views import ThrottledLoginView, throttled_login

urlpatterns = [
    path("teams/", views.team_list, name="team-list"),
    path("teams/<uuid:code>/", views.team_detail, name="team-detail"),
    path("teams/<uuid:code>/members/", views.team_member_add, name="team-member-add"),
    path("features/", views.feature_list, name="feature-list"),
    path("features/<uuid:code>/", views.feature_detail, name="feature-detail"),
    path("audit/", views.audit_list, name="audit-list"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("login/", ThrottledLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/v1/", include(router.urls)),
    path("api/v1/", include("routing.api.urls")),
    path("api/v1/", include("billing.api.urls")),
    path("", include("routing.urls")),
    path("", include("billing.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path(
        "api/docs/",
        SpectacularRedocView.as_view(url_name="api-schema", template_name="api/redoc.html"),
        name="api-docs",
    ),
    path("favicon.ico", views.favicon, name="favicon"),
    path(
        "admin/login/", throttled_login(admin.site.login)
    ),  # before admin.site.urls: same throttle as /login/
    path("admin/", admin.site.urls),
]
