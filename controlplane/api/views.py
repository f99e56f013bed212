"""REST API v1 for tenancy. Every write asks controlplane.permissions and goes through an audited service."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from rest_framework import mixins, permissions, viewsets
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.request import Request

from controlplane import services
from controlplane.api.serializers import (
    AuditEntrySerializer,
    FeatureSerializer,
    MembershipSerializer,
    TeamSerializer,
    _as_drf_error,
)
from controlplane.filtersets import AuditEntryFilterSet, FeatureFilterSet, MembershipFilterSet, TeamFilterSet
from controlplane.models import AuditEntry, Feature, Membership, Team
from controlplane.permissions import Action, can, visible_features, visible_teams
from controlplane.selectors import audit_entries_for, memberships_for


class ScopedPermission(permissions.BasePermission):
    """Object-level checks through controlplane.permissions; reads need any membership in scope."""

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return can(request.user, Action.VIEW, obj)
        return can(request.user, view.write_action, obj)


def _run(save: Any) -> Any:
    try:
        return save()
    except DjangoValidationError as exc:
        raise _as_drf_error(exc) from exc


class TeamViewSet(viewsets.ModelViewSet):
    serializer_class = TeamSerializer
    permission_classes = [permissions.IsAuthenticated, ScopedPermission]
    filterset_class = TeamFilterSet
    lookup_field = "code"
    write_action = Action.MANAGE_TEAMS
    http_method_names = ["get", "post", "patch", "put", "head", "options"]

    def get_queryset(self) -> QuerySet[Team]:
        return visible_teams(self.request.user).order_by("name")

    def perform_create(self, serializer: TeamSerializer) -> None:
        if not can(self.request.user, Action.MANAGE_TEAMS):
            raise PermissionDenied("Only admins create teams.")
        serializer.instance = _run(
            lambda: services.team_create(actor=self.request.user, **serializer.validated_data)
        )

    def perform_update(self, serializer: TeamSerializer) -> None:
        team = serializer.instance
        _run(lambda: services.team_update(actor=self.request.user, team=team, **serializer.validated_data))


class FeatureViewSet(viewsets.ModelViewSet):
    serializer_class = FeatureSerializer
    permission_classes = [permissions.IsAuthenticated, ScopedPermission]
    filterset_class = FeatureFilterSet
    lookup_field = "code"
    write_action = Action.MANAGE_FEATURES
    http_method_names = ["get", "post", "patch", "put", "head", "options"]

    def get_queryset(self) -> QuerySet[Feature]:
        return visible_features(self.request.user).order_by("team__name", "name")

    def perform_create(self, serializer: FeatureSerializer) -> None:
        team = serializer.validated_data["team"]
        if not can(self.request.user, Action.VIEW, team):
            raise NotFound("No such team.")
        if not can(self.request.user, Action.MANAGE_FEATURES, team):
            raise PermissionDenied("Only admins and the team's PMs create its features.")
        serializer.instance = _run(
            lambda: services.feature_create(actor=self.request.user, **serializer.validated_data)
        )

    def perform_update(self, serializer: FeatureSerializer) -> None:
        feature = serializer.instance
        new_team = serializer.validated_data.get("team", feature.team)
        if not can(self.request.user, Action.MANAGE_FEATURES, new_team):
            raise PermissionDenied("You may not move the feature to that team.")
        _run(
            lambda: services.feature_update(
                actor=self.request.user, feature=feature, **serializer.validated_data
            )
        )


class MembershipViewSet(viewsets.ModelViewSet):
    serializer_class = MembershipSerializer
    permission_classes = [permissions.IsAuthenticated, ScopedPermission]
    filterset_class = MembershipFilterSet
    write_action = Action.MANAGE_MEMBERS
    http_method_names = ["get", "post", "patch", "put", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Membership]:
        return memberships_for(self.request.user)

    def perform_create(self, serializer: MembershipSerializer) -> None:
        if not can(self.request.user, Action.MANAGE_MEMBERS):
            raise PermissionDenied("Only admins manage memberships.")
        serializer.instance = _run(
            lambda: services.membership_create(actor=self.request.user, **serializer.validated_data)
        )

    def perform_update(self, serializer: MembershipSerializer) -> None:
        membership = serializer.instance
        _run(
            lambda: services.membership_update(
                actor=self.request.user, membership=membership, **serializer.validated_data
            )
        )

    def perform_destroy(self, instance: Membership) -> None:
        services.membership_delete(actor=self.request.user, membership=instance)


class AuditEntryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = AuditEntrySerializer
    filterset_class = AuditEntryFilterSet
    lookup_field = "code"

    def get_queryset(self) -> QuerySet[AuditEntry]:
        return audit_entries_for(self.request.user)
