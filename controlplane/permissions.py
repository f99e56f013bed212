"""The one place that decides "may user U do action A on object O"; views, forms and the API all ask here.

A membership on a team gives its role on that team; a membership without a team gives it on every
team. Objects are scoped by their team: a Team, a Feature, or anything with a `team` or `feature`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q, QuerySet

from controlplane.http import object_or_404
from controlplane.models import Feature, Membership, Role, Team


class Action(StrEnum):
    VIEW = "view"
    MANAGE_TEAMS = "manage_teams"  # create, rename, delete teams
    MANAGE_FEATURES = "manage_features"  # create and edit features of a team
    EDIT_BUDGET = "edit_budget"
    EDIT_ROUTING = "edit_routing"  # deployments, policies
    EDIT_ENDPOINTS = "edit_endpoints"  # a deployment's api_base and key variable: where a provider key goes
    EDIT_EXPERIMENTS = "edit_experiments"
    MANAGE_FLEET = "manage_fleet"  # proxies, publish, rollout, rollback
    VIEW_FLEET = "view_fleet"  # read bundles: every team's slugs, key hashes, budgets, experiments
    MANAGE_KEYS = "manage_keys"
    MANAGE_MEMBERS = "manage_members"
    ACK_ALERTS = "ack_alerts"


GRANTS: dict[Action, frozenset[str]] = {
    Action.VIEW: frozenset(Role.values),
    Action.MANAGE_TEAMS: frozenset({Role.ADMIN}),
    Action.MANAGE_FEATURES: frozenset({Role.ADMIN, Role.PM}),
    Action.EDIT_BUDGET: frozenset({Role.ADMIN, Role.PM}),
    Action.EDIT_ROUTING: frozenset({Role.ADMIN, Role.MLOPS}),
    Action.EDIT_ENDPOINTS: frozenset({Role.ADMIN}),
    Action.EDIT_EXPERIMENTS: frozenset({Role.ADMIN, Role.MLOPS}),
    Action.MANAGE_FLEET: frozenset({Role.ADMIN, Role.MLOPS}),
    Action.VIEW_FLEET: frozenset(Role.values),  # any role, but org-wide only (ORG_ONLY)
    Action.MANAGE_KEYS: frozenset({Role.ADMIN}),
    Action.MANAGE_MEMBERS: frozenset({Role.ADMIN}),
    Action.ACK_ALERTS: frozenset({Role.ADMIN, Role.PM, Role.MLOPS}),
}

# Actions on things that belong to no team (fleet, org-wide policy, teams themselves) need an org-wide role.
ORG_ONLY = frozenset(
    {
        Action.MANAGE_TEAMS,
        Action.MANAGE_FLEET,
        Action.VIEW_FLEET,
        Action.EDIT_ENDPOINTS,
        Action.MANAGE_MEMBERS,
    }
)

User = AbstractBaseUser | AnonymousUser


def _memberships(user: Any) -> list[Membership]:
    cached = getattr(user, "_finops_memberships", None)
    if cached is None:
        cached = list(Membership.objects.filter(user=user))
        user._finops_memberships = cached
    return cached


def team_id_of(obj: Any) -> int | None:
    """The team an object belongs to, or None for organisation-level objects."""
    if obj is None:
        return None
    if isinstance(obj, Team):
        return obj.pk
    if isinstance(obj, Feature):
        return obj.team_id
    if getattr(obj, "team_id", None) is not None:
        return obj.team_id
    feature = getattr(obj, "feature", None)
    if isinstance(feature, Feature):
        return feature.team_id
    return None


def roles_for(user: Any, team_id: int | None) -> set[str]:
    """Roles the user holds on a team (None: roles held organisation-wide)."""
    if not getattr(user, "is_authenticated", False):
        return set()
    if getattr(user, "is_superuser", False):
        return {Role.ADMIN}
    return {
        m.role
        for m in _memberships(user)
        if m.team_id is None or (team_id is not None and m.team_id == team_id)
    }


def _memberships_any(user: Any) -> list[Membership]:
    if not getattr(user, "is_authenticated", False):
        return []
    return _memberships(user)


def can(user: Any, action: Action | str, obj: Any = None) -> bool:
    """May `user` do `action` on `obj` (a Team, Feature, team-scoped object, or None for org level)?"""
    action = Action(action)
    team_id = team_id_of(obj)
    if action in ORG_ONLY or obj is None:
        roles = roles_for(user, None)
        if action is Action.VIEW and obj is None:
            return bool(_memberships_any(user)) or bool(roles)
    else:
        roles = roles_for(user, team_id)
    return bool(roles & GRANTS[action])


def can_anywhere(user: Any, action: Action | str) -> bool:
    """Does the user hold this permission on at least one team (for showing a button at all)?"""
    action = Action(action)
    if getattr(user, "is_superuser", False):
        return True
    return any(
        m.role in GRANTS[action]
        for m in _memberships_any(user)
        if action not in ORG_ONLY or m.team_id is None
    )


def is_org_wide(user: Any) -> bool:
    """Does the user hold a role across the whole organisation?"""
    if not getattr(user, "is_authenticated", False):
        return False
    return bool(user.is_superuser) or any(m.team_id is None for m in _memberships(user))


def visible_teams(user: Any) -> QuerySet[Team]:
    if not getattr(user, "is_authenticated", False):
        return Team.objects.none()
    if is_org_wide(user):
        return Team.objects.all()
    return Team.objects.filter(pk__in=[m.team_id for m in _memberships(user)])


def visible_features(user: Any) -> QuerySet[Feature]:
    teams = visible_teams(user)
    return Feature.objects.filter(team__in=teams).select_related("team", "owner")


def teams_where(user: Any, action: Action | str) -> QuerySet[Team]:
    """Teams on which the user may do `action` (for form choices)."""
    action = Action(action)
    if not getattr(user, "is_authenticated", False):
        return Team.objects.none()
    if getattr(user, "is_superuser", False):
        return Team.objects.all()
    allowed = [m for m in _memberships(user) if m.role in GRANTS[action]]
    if any(m.team_id is None for m in allowed):
        return Team.objects.all()
    return Team.objects.filter(Q(pk__in=[m.team_id for m in allowed]))


def feature_for_user(user: Any, code: Any) -> Feature:
    """The feature with this public code if the user may see it, else 404."""
    return object_or_404(
        Feature.objects.select_related("team", "owner"),
        code,
        visible=lambda feature: can(user, Action.VIEW, feature),
        message="No such feature",
    )


def team_for_user(user: Any, code: Any) -> Team:
    """The team with this public code if the user may see it, else 404."""
    return object_or_404(
        Team.objects.all(), code, visible=lambda team: can(user, Action.VIEW, team), message="No such team"
    )
