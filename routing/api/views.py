"""REST API v1 for routing and the fleet. Every write asks controlplane.permissions and goes through a service."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Q, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.api.serializers import _as_drf_error
from controlplane.permissions import Action, can, visible_features
from routing import services
from routing.api.serializers import (
    BundleDetailSerializer,
    BundleSerializer,
    DeploymentSerializer,
    FeatureKeySerializer,
    PolicySerializer,
    ProxySerializer,
    PublishSerializer,
    RolloutRequestSerializer,
    RolloutSerializer,
)
from routing.compiler import bundle_diff
from routing.models import Bundle, FeatureKey, ModelDeployment, Proxy, Rollout, RoutingPolicy
from routing.services import fleet as fleet_services


def _run(save: Any) -> Any:
    try:
        return save()
    except services.BundleRejected as exc:
        raise DRFValidationError({"errors": exc.errors}) from exc
    except DjangoValidationError as exc:
        raise _as_drf_error(exc) from exc


def _require(user: Any, action_: Action, obj: Any = None, message: str = "") -> None:
    if not can(user, action_, obj):
        raise PermissionDenied(message or "You may not do this.")


class MemberReadPermission(permissions.BasePermission):
    """Anyone with a membership reads org-level routing and fleet objects; others see nothing (404)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated)


class OrgScoped:
    def visible(self, queryset: QuerySet) -> QuerySet:
        return queryset if can(self.request.user, Action.VIEW) else queryset.none()  # type: ignore[attr-defined]


class DeploymentViewSet(
    OrgScoped,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = DeploymentSerializer
    lookup_field = "code"
    http_method_names = ["get", "post", "patch", "put", "head", "options"]

    def get_queryset(self) -> QuerySet[ModelDeployment]:
        return self.visible(ModelDeployment.objects.all())

    def perform_create(self, serializer: DeploymentSerializer) -> None:
        _require(
            self.request.user, Action.EDIT_ROUTING, None, "Only MLOps engineers and admins edit deployments."
        )
        serializer.instance = _run(
            lambda: services.deployment_create(actor=self.request.user, **serializer.validated_data)
        )

    def perform_update(self, serializer: DeploymentSerializer) -> None:
        _require(
            self.request.user, Action.EDIT_ROUTING, None, "Only MLOps engineers and admins edit deployments."
        )
        deployment = serializer.instance
        _run(
            lambda: services.deployment_update(
                actor=self.request.user, deployment=deployment, **serializer.validated_data
            )
        )


class PolicyViewSet(viewsets.ModelViewSet):
    serializer_class = PolicySerializer
    lookup_field = "code"
    http_method_names = ["get", "post", "patch", "put", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[RoutingPolicy]:
        user = self.request.user
        policies = RoutingPolicy.objects.select_related("feature", "small_deployment", "frontier_deployment")
        if not can(user, Action.VIEW):
            return policies.none()
        return policies.filter(Q(feature__isnull=True) | Q(feature__in=visible_features(user))).order_by(
            "feature__slug"
        )

    def perform_create(self, serializer: PolicySerializer) -> None:
        user = self.request.user
        feature = serializer.validated_data.get("feature")
        if feature is not None and not can(user, Action.VIEW, feature):
            raise NotFound("No such feature.")
        _require(user, Action.EDIT_ROUTING, feature, "Only MLOps engineers and admins edit routing policies.")
        serializer.instance = _run(lambda: services.policy_create(actor=user, **serializer.validated_data))

    def perform_update(self, serializer: PolicySerializer) -> None:
        policy = serializer.instance
        _require(
            self.request.user,
            Action.EDIT_ROUTING,
            policy.feature,
            "Only MLOps engineers and admins edit policies.",
        )
        _run(
            lambda: services.policy_update(
                actor=self.request.user, policy=policy, **serializer.validated_data
            )
        )

    def perform_destroy(self, instance: RoutingPolicy) -> None:
        _require(
            self.request.user,
            Action.EDIT_ROUTING,
            instance.feature,
            "Only MLOps engineers and admins delete policies.",
        )
        _run(lambda: services.policy_delete(actor=self.request.user, policy=instance))


class FeatureKeyViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    """Feature keys: the plaintext appears once, in the create response (`key`)."""

    serializer_class = FeatureKeySerializer
    lookup_field = "code"

    def get_queryset(self) -> QuerySet[FeatureKey]:
        return FeatureKey.objects.filter(feature__in=visible_features(self.request.user)).select_related(
            "feature__team"
        )

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        feature = serializer.validated_data["feature"]
        if not can(request.user, Action.VIEW, feature):
            raise NotFound("No such feature.")
        _require(request.user, Action.MANAGE_KEYS, feature, "Only admins issue feature keys.")
        key, plaintext = _run(
            lambda: services.feature_key_create(
                actor=request.user,
                feature=feature,
                name=serializer.validated_data["name"],
                expires_at=serializer.validated_data.get("expires_at"),
            )
        )
        return Response({**FeatureKeySerializer(key).data, "key": plaintext}, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=FeatureKeySerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, code: str | None = None) -> Response:
        key = self.get_object()
        _require(request.user, Action.MANAGE_KEYS, key.feature, "Only admins revoke feature keys.")
        services.feature_key_revoke(actor=request.user, key=key)
        return Response(FeatureKeySerializer(key).data)


class BundleViewSet(OrgScoped, viewsets.ReadOnlyModelViewSet):
    lookup_field = "code"

    def get_queryset(self) -> QuerySet[Bundle]:
        bundles = Bundle.objects.select_related("created_by")
        # every team's slugs, key hashes and budgets: org-wide roles only
        return bundles if can(self.request.user, Action.VIEW_FLEET) else bundles.none()

    def get_serializer_class(self) -> Any:
        return BundleDetailSerializer if self.action == "retrieve" else BundleSerializer

    @extend_schema(request=PublishSerializer, responses={201: BundleSerializer})
    @action(detail=False, methods=["post"])
    def publish(self, request: Request) -> Response:
        if not can(request.user, Action.VIEW):
            raise NotFound()
        _require(request.user, Action.MANAGE_FLEET, None, "Only MLOps engineers and admins publish bundles.")
        params = PublishSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        bundle = _run(lambda: services.bundle_publish(actor=request.user, **params.validated_data))
        rollout = bundle.rollouts.order_by("-id").first()
        body = {**BundleSerializer(bundle).data, "rollout": rollout.code if rollout else None}
        return Response(body, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["get"])
    def diff(self, request: Request, code: str | None = None) -> Response:
        bundle = self.get_object()
        against_code = request.query_params.get("against")
        against = (
            self.get_queryset().filter(code=against_code).first()
            if against_code
            else Bundle.objects.filter(number__lt=bundle.number).order_by("-number").first()
        )
        if against_code and against is None:
            raise NotFound("No such bundle to compare with.")
        changes = bundle_diff(against.document if against else None, bundle.document)
        return Response(
            {
                "from": against.version if against else None,
                "to": bundle.version,
                "changes": [c.__dict__ for c in changes],
            }
        )

    @extend_schema(request=RolloutRequestSerializer, responses={201: RolloutSerializer})
    @action(detail=True, methods=["post"])
    def rollout(self, request: Request, code: str | None = None) -> Response:
        """Roll this version out to every proxy (or one pool) now: how you roll back."""
        bundle = self.get_object()
        _require(request.user, Action.MANAGE_FLEET, None, "Only MLOps engineers and admins roll bundles out.")
        params = RolloutRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        rollout = _run(
            lambda: services.rollout_rollback(actor=request.user, bundle=bundle, **params.validated_data)
        )
        return Response(RolloutSerializer(rollout).data, status=status.HTTP_201_CREATED)


class RolloutViewSet(OrgScoped, viewsets.ReadOnlyModelViewSet):
    serializer_class = RolloutSerializer
    lookup_field = "code"

    def get_queryset(self) -> QuerySet[Rollout]:
        return self.visible(
            Rollout.objects.select_related("bundle", "previous_bundle").prefetch_related("targets__proxy")
        )


class ProxyViewSet(
    OrgScoped,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Proxies of the fleet; the token appears once, in the create (and rotate) response."""

    serializer_class = ProxySerializer
    lookup_field = "code"
    http_method_names = ["get", "post", "patch", "put", "head", "options"]

    def get_queryset(self) -> QuerySet[Proxy]:
        return self.visible(Proxy.objects.select_related("target_bundle"))

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if not can(request.user, Action.VIEW):
            raise NotFound()
        _require(request.user, Action.MANAGE_FLEET, None, "Only MLOps engineers and admins register proxies.")
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        proxy, token = _run(
            lambda: fleet_services.proxy_create(actor=request.user, **serializer.validated_data)
        )
        return Response({**ProxySerializer(proxy).data, "token": token}, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer: ProxySerializer) -> None:
        _require(
            self.request.user, Action.MANAGE_FLEET, None, "Only MLOps engineers and admins edit proxies."
        )
        proxy = serializer.instance
        _run(
            lambda: fleet_services.proxy_update(
                actor=self.request.user, proxy=proxy, **serializer.validated_data
            )
        )

    @extend_schema(request=None, responses={200: dict})
    @action(detail=True, methods=["post"], url_path="rotate-token")
    def rotate_token(self, request: Request, code: str | None = None) -> Response:
        proxy = self.get_object()
        _require(
            request.user, Action.MANAGE_FLEET, None, "Only MLOps engineers and admins rotate proxy tokens."
        )
        return Response({"token": fleet_services.proxy_rotate_token(actor=request.user, proxy=proxy)})
