"""Budget panels (feature and team), the alerts page with acknowledge/resolve/snooze, and the live alert badge."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing import alerts, budgets
from billing.forms import AlertSnoozeForm, BudgetForm
from billing.models import (
    Alert,
    AlertKind,
    AlertStatus,
    Budget,
    FeatureAlertSettings,
)
from billing.notifications import channel_for
from controlplane.http import object_or_404, save_form
from controlplane.models import Feature, Team
from controlplane.permissions import (
    Action,
    can,
    feature_for_user,
    team_for_user,
    visible_features,
    visible_teams,
)

# --- budget panel -------------------------------------------------------------------------------------


def _initial(budget: Budget | None, settings_row: FeatureAlertSettings | None) -> dict[str, Any]:
    initial: dict[str, Any] = {}
    if budget is not None:
        initial = {
            "amount_usd": budget.amount_usd,
            "thresholds": ", ".join(str(t) for t in budget.thresholds),
            "action": budget.action,
            "is_active": budget.is_active,
        }
    if settings_row is not None and settings_row.fallback_threshold is not None:
        initial["fallback_threshold_pct"] = (settings_row.fallback_threshold * 100).normalize()
    return initial


def _panel(
    request: HttpRequest,
    *,
    team: Team,
    feature: Feature | None,
    may_edit: bool,
    form: BudgetForm,
    saved: bool,
    status: int = 200,
) -> HttpResponse:
    budget = Budget.objects.filter(team=team, feature=feature).select_related("status").first()
    team_level = budgets.team_budget(team) if feature is not None else None
    context = {
        "team": team,
        "feature": feature,
        "budget": budget,
        "budget_status": getattr(budget, "status", None) if budget else None,
        "team_budget": team_level,
        "team_status": getattr(team_level, "status", None) if team_level else None,
        "may_edit": may_edit,
        "form": form,
        "saved": saved,
        "post_url": request.path,
        "webhook_secret": _webhook_secret(request.user, team) if feature is None else None,
    }
    template = "billing/budget_panel.html" if request.htmx else "billing/budget_page.html"
    return render(request, template, context, status=status)


def _webhook_secret(user: Any, team: Team) -> str | None:
    """The team's webhook signing secret, shown on its budget panel to admins only."""
    if not team.webhook_url or not can(user, Action.MANAGE_TEAMS, team):
        return None

    return channel_for(team).webhook_secret


def _budget_save(actor: Any, team: Team, feature: Feature | None, data: dict[str, Any]) -> Any:
    """The form's fallback threshold is a percentage; the budget stores a share."""
    pct = data.pop("fallback_threshold_pct", None)
    fallback_threshold = None if pct is None else (pct / 100).quantize(Decimal("0.001"))
    return budgets.budget_save(
        actor=actor, team=team, feature=feature, fallback_threshold=fallback_threshold, **data
    )


def _budget_view(request: HttpRequest, *, team: Team, feature: Feature | None) -> HttpResponse:
    obj = feature if feature is not None else team
    may_edit = can(request.user, Action.EDIT_BUDGET, obj)
    budget = Budget.objects.filter(team=team, feature=feature).first()
    settings_row = FeatureAlertSettings.objects.filter(feature=feature).first() if feature else None
    with_fallback = feature is not None
    if request.method != "POST":
        form = BudgetForm(initial=_initial(budget, settings_row), with_fallback=with_fallback)
        return _panel(request, team=team, feature=feature, may_edit=may_edit, form=form, saved=False)
    if not may_edit:
        raise PermissionDenied("Only admins and this team's product managers edit its budgets.")
    form = BudgetForm(request.POST, with_fallback=with_fallback)
    _, saved = save_form(form, lambda data: _budget_save(request.user, team, feature, dict(data)))
    if saved:
        return _panel(request, team=team, feature=feature, may_edit=may_edit, form=form, saved=True)
    return _panel(request, team=team, feature=feature, may_edit=may_edit, form=form, saved=False, status=422)


@login_required
@require_http_methods(["GET", "POST"])
def feature_budget(request: HttpRequest, code: str) -> HttpResponse:
    feature = feature_for_user(request.user, code)
    return _budget_view(request, team=feature.team, feature=feature)


@login_required
@require_http_methods(["GET", "POST"])
def team_budget(request: HttpRequest, code: str) -> HttpResponse:
    team = team_for_user(request.user, code)
    return _budget_view(request, team=team, feature=None)


# --- alerts ---------------------------------------------------------------------------------------------


def _alert_for_user(user: Any, code: str) -> Alert:
    return object_or_404(alerts.alerts_visible(user), code, message="No such alert")


@login_required
@require_GET
def alert_list(request: HttpRequest) -> HttpResponse:
    qs = alerts.alerts_visible(request.user)
    kind, status = request.GET.get("kind", ""), request.GET.get("status", "active")
    team_code, feature_code = request.GET.get("team", ""), request.GET.get("feature", "")
    if kind in AlertKind.values:
        qs = qs.filter(kind=kind)
    if status == "active":
        qs = qs.filter(pk__in=alerts.alerts_active(request.user).values("pk"))
    elif status == "snoozed":
        qs = qs.exclude(status=AlertStatus.RESOLVED).filter(snoozed_until__gt=timezone.now())
    elif status in AlertStatus.values:
        qs = qs.filter(status=status)
    teams = visible_teams(request.user)
    features = visible_features(request.user)
    if team_code:
        qs = qs.filter(team__code__in=[str(t.code) for t in teams if str(t.code) == team_code])
    if feature_code:
        qs = qs.filter(feature__code__in=[str(f.code) for f in features if str(f.code) == feature_code])
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "kinds": AlertKind.choices,
        "statuses": [
            ("active", "Open or acknowledged, not snoozed"),
            ("snoozed", "Snoozed"),
            *AlertStatus.choices,
            ("all", "All"),
        ],
        "teams": teams,
        "features": features,
        "selected": {"kind": kind, "status": status, "team": team_code, "feature": feature_code},
    }
    for alert in page:
        alert.may_ack = can(request.user, Action.ACK_ALERTS, alert)
    template = "billing/alert_rows.html" if request.htmx else "billing/alert_list.html"
    return render(request, template, context)


def _after_action(
    request: HttpRequest, alert: Alert, errors: dict[str, list[str]] | None = None
) -> HttpResponse:
    if request.htmx:
        alert.refresh_from_db()
        alert.may_ack = True
        alert.snooze_errors = errors or {}
        return render(request, "billing/alert_row.html", {"alert": alert}, status=422 if errors else 200)
    for field, problems in (errors or {}).items():
        for problem in problems:
            messages.error(request, f"{field}: {problem}")
    return redirect("alerts")


@login_required
@require_POST
def alert_snooze(request: HttpRequest, code: str) -> HttpResponse:
    """Snooze (1 h, 24 h or until a day) or, with `duration=off`, end the snooze. Audited."""
    alert = _alert_for_user(request.user, code)
    if not can(request.user, Action.ACK_ALERTS, alert):
        raise PermissionDenied("Only admins, product managers and MLOps engineers snooze alerts.")
    now = timezone.now()
    if request.POST.get("duration") == "off":
        until = None
    else:
        zone = budgets.team_zone(alert.team) if alert.team_id else timezone.get_default_timezone()
        form = AlertSnoozeForm(request.POST, zone=zone, now=now)
        if not form.is_valid():
            return _after_action(request, alert, {f: list(e) for f, e in form.errors.items()})
        until = form.cleaned_data["until_at"]
    try:
        alerts.alert_snooze(alert=alert, actor=request.user, until=until, now=now)
    except ValidationError as exc:
        return _after_action(request, alert, exc.message_dict)
    return _after_action(request, alert)


@login_required
@require_POST
def alert_acknowledge(request: HttpRequest, code: str) -> HttpResponse:
    alert = _alert_for_user(request.user, code)
    if not can(request.user, Action.ACK_ALERTS, alert):
        raise PermissionDenied("Only admins, product managers and MLOps engineers acknowledge alerts.")
    alerts.alert_acknowledge(alert=alert, actor=request.user)
    return _after_action(request, alert)


@login_required
@require_POST
def alert_resolve(request: HttpRequest, code: str) -> HttpResponse:
    alert = _alert_for_user(request.user, code)
    if not can(request.user, Action.ACK_ALERTS, alert):
        raise PermissionDenied("Only admins, product managers and MLOps engineers resolve alerts.")
    alerts.alert_resolve(alert=alert, actor=request.user, now=timezone.now())
    return _after_action(request, alert)


@login_required
@require_GET
def alert_badge(request: HttpRequest) -> HttpResponse:
    return render(request, "billing/alert_badge.html", {"open_alerts": alerts.open_alert_count(request.user)})
