"""Pages for teams, features, the audit log and health. One URL serves a page and its htmx fragment."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from controlplane import services
from controlplane.celery import app
from controlplane.filtersets import AuditEntryFilterSet
from controlplane.forms import FeatureForm, MemberAddForm, TeamForm
from controlplane.http import save_form, wants_fragment
from controlplane.permissions import (
    Action,
    can,
    can_anywhere,
    feature_for_user,
    team_for_user,
    teams_where,
    visible_features,
    visible_teams,
)
from controlplane.selectors import audit_entries_for


@login_required
@require_http_methods(["GET", "POST"])
def team_list(request: HttpRequest) -> HttpResponse:
    may_create = can(request.user, Action.MANAGE_TEAMS)
    form = TeamForm()
    if request.method == "POST":
        if not may_create:
            raise PermissionDenied("Only admins create teams.")
        form = TeamForm(request.POST)
        team, ok = save_form(form, lambda data: services.team_create(actor=request.user, **data))
        if ok:
            return HttpResponseClientRedirect(reverse("team-detail", args=[team.code]))  # type: ignore[union-attr]
        return render(request, "controlplane/_team_form.html", {"form": form}, status=422)
    teams = visible_teams(request.user).prefetch_related("features")
    return render(
        request, "controlplane/team_list.html", {"teams": teams, "form": form, "may_create": may_create}
    )


@login_required
@require_http_methods(["GET", "POST"])
def team_detail(request: HttpRequest, code: str) -> HttpResponse:
    team = team_for_user(request.user, code)
    may_edit = can(request.user, Action.MANAGE_TEAMS, team)
    form = TeamForm(instance=team)
    if request.method == "POST":
        if not may_edit:
            raise PermissionDenied("Only admins edit teams.")
        form = TeamForm(request.POST, instance=team)
        _, ok = save_form(form, lambda data: services.team_update(actor=request.user, team=team, **data))
        if ok:
            return HttpResponseClientRedirect(reverse("team-detail", args=[team.code]))
        return render(request, "controlplane/_team_form.html", {"form": form, "team": team}, status=422)
    context = {
        "team": team,
        "form": form,
        "may_edit": may_edit,
        "features": team.features.select_related("owner"),
        "memberships": team.memberships.select_related("user"),
        "member_form": MemberAddForm(team=team) if can(request.user, Action.MANAGE_MEMBERS) else None,
    }
    return render(request, "controlplane/team_detail.html", context)


@login_required
@require_POST
def team_member_add(request: HttpRequest, code: str) -> HttpResponse:
    """Add a user to the team with a role (audited); the form with its errors comes back on bad input."""
    team = team_for_user(request.user, code)
    if not can(request.user, Action.MANAGE_MEMBERS):
        raise PermissionDenied("Only admins add team members.")
    form = MemberAddForm(request.POST, team=team)
    if form.is_valid():
        services.membership_create(
            actor=request.user, user=form.cleaned_data["username"], team=team, role=form.cleaned_data["role"]
        )
        return HttpResponseClientRedirect(reverse("team-detail", args=[team.code]))
    return render(request, "controlplane/_member_form.html", {"member_form": form, "team": team}, status=422)


@login_required
@require_http_methods(["GET", "POST"])
def feature_list(request: HttpRequest) -> HttpResponse:
    allowed_teams = teams_where(request.user, Action.MANAGE_FEATURES)
    form = FeatureForm(teams=allowed_teams)
    if request.method == "POST":
        form = FeatureForm(request.POST, teams=allowed_teams)
        if not allowed_teams.exists():
            raise PermissionDenied("You may not create features: ask an admin or a PM of the team.")
        feature, ok = save_form(form, lambda data: services.feature_create(actor=request.user, **data))
        if ok:
            return HttpResponseClientRedirect(reverse("feature-detail", args=[feature.code]))  # type: ignore[union-attr]
        return render(request, "controlplane/_feature_form.html", {"form": form}, status=422)
    features = visible_features(request.user)
    team_slug = request.GET.get("team", "")
    if team_slug:
        features = features.filter(team__slug=team_slug)
    query = request.GET.get("q", "").strip()
    if query:
        features = features.filter(
            Q(name__icontains=query) | Q(slug__icontains=query) | Q(description__icontains=query)
        )
    context = {
        "query": query,
        "features": features,
        "teams": visible_teams(request.user),
        "team_slug": team_slug,
        "form": form,
        "may_create": can_anywhere(request.user, Action.MANAGE_FEATURES),
    }
    template = (
        "controlplane/_feature_rows.html" if wants_fragment(request) else "controlplane/feature_list.html"
    )
    return render(request, template, context)


@login_required
@require_http_methods(["GET", "POST"])
def feature_detail(request: HttpRequest, code: str) -> HttpResponse:
    feature = feature_for_user(request.user, code)
    may_edit = can(request.user, Action.MANAGE_FEATURES, feature)
    allowed_teams = teams_where(request.user, Action.MANAGE_FEATURES)
    form = FeatureForm(instance=feature, teams=allowed_teams)
    if request.method == "POST":
        if not may_edit:
            raise PermissionDenied("Only admins and this team's PMs edit the feature.")
        form = FeatureForm(request.POST, instance=feature, teams=allowed_teams)
        _, ok = save_form(
            form, lambda data: services.feature_update(actor=request.user, feature=feature, **data)
        )
        if ok:
            return HttpResponseClientRedirect(reverse("feature-detail", args=[feature.code]))
        return render(
            request, "controlplane/_feature_form.html", {"form": form, "feature": feature}, status=422
        )
    if request.GET.get("format") == "csv":  # a table export: billing's spend section answers it
        return redirect(f"{reverse('feature-spend', args=[feature.code])}?{request.GET.urlencode()}")
    context = {"feature": feature, "form": form, "may_edit": may_edit}
    return render(request, "controlplane/feature_detail.html", context)


@login_required
@require_GET
def audit_list(request: HttpRequest) -> HttpResponse:
    filterset = AuditEntryFilterSet(request.GET, queryset=audit_entries_for(request.user))
    page = Paginator(filterset.qs, 50).get_page(request.GET.get("page"))
    context = {"filter": filterset, "page": page, "teams": visible_teams(request.user)}
    template = "controlplane/_audit_rows.html" if wants_fragment(request) else "controlplane/audit_list.html"
    return render(request, template, context)


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready when the database answers and the broker is reachable; 503 with the failing part otherwise."""
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means not ready
        checks["database"] = f"error: {exc.__class__.__name__}"
    checks["broker"] = _broker_status()
    beat = cache.get("controlplane:beat-heartbeat")
    ready = all(value == "ok" for value in checks.values())
    body = {"status": "ok" if ready else "unavailable", "checks": checks, "last_beat": beat}
    return JsonResponse(body, status=200 if ready else 503)


def _broker_status() -> str:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return "ok"
    except Exception as exc:  # kombu raises many kinds; any of them means unreachable
        return f"error: {exc.__class__.__name__}"


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico on every page (the API docs too): point them at the static icon."""
    return redirect(static("favicon.svg"), permanent=True)
