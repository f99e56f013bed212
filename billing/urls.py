"""Pages of the billing app (included at the site root by controlplane/urls.py)."""

from django.urls import path

from billing.views import budgets, dashboards

urlpatterns = [
    path("", dashboards.overview, name="overview"),
    path("routing/analytics/", dashboards.routing_analytics, name="routing-analytics"),
    path("billing/export/focus/", dashboards.focus_export, name="focus-export"),
    path("requests/", dashboards.request_log, name="request-log"),
    path("features/<uuid:code>/spend/", dashboards.feature_spend, name="feature-spend"),
    path("features/<uuid:code>/budget/", budgets.feature_budget, name="feature-budget"),
    path("teams/<uuid:code>/budget/", budgets.team_budget, name="team-budget"),
    path("alerts/", budgets.alert_list, name="alerts"),
    path("alerts/badge/", budgets.alert_badge, name="alert-badge"),
    path("alerts/<uuid:code>/acknowledge/", budgets.alert_acknowledge, name="alert-acknowledge"),
    path("alerts/<uuid:code>/resolve/", budgets.alert_resolve, name="alert-resolve"),
    path("alerts/<uuid:code>/snooze/", budgets.alert_snooze, name="alert-snooze"),
]
