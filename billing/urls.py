"""Pages of the billing app (included at the site root by controlplane/urls.py)."""

from django.urls import path

from billing import dashboard_views

urlpatterns: list = []

# Dashboards and exports (issue 8)
urlpatterns += [
    path("", dashboard_views.overview, name="overview"),
    path("routing/analytics/", dashboard_views.routing_analytics, name="routing-analytics"),
    path("billing/export/focus/", dashboard_views.focus_export, name="focus-export"),
    path("requests/", dashboard_views.request_log, name="request-log"),
]

from billing import budget_views  # noqa: E402

urlpatterns += [
    path("features/<uuid:code>/budget/", budget_views.feature_budget, name="feature-budget"),
    path("teams/<uuid:code>/budget/", budget_views.team_budget, name="team-budget"),
    path("alerts/", budget_views.alert_list, name="alerts"),
    path("alerts/badge/", budget_views.alert_badge, name="alert-badge"),
    path("alerts/<uuid:code>/acknowledge/", budget_views.alert_acknowledge, name="alert-acknowledge"),
    path("alerts/<uuid:code>/resolve/", budget_views.alert_resolve, name="alert-resolve"),
]
