"""The proxy-facing fleet API: bundle pull (ETag / 304) and heartbeat, authenticated by the proxy's token."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.http import HttpResponse
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema
from rest_framework import authentication, exceptions, permissions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from routing.engine.bundle import canonical_json
from routing.models import Proxy
from routing.selectors import proxy_target_bundle
from routing.services import bundle_signed_document
from routing.services.fleet import proxy_by_token, proxy_heartbeat


class ProxyTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <proxy token>`; request.auth is the Proxy."""

    def authenticate(self, request: Request) -> tuple[Any, Proxy] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header.startswith("Bearer "):
            return None
        proxy = proxy_by_token(header.removeprefix("Bearer ").strip())
        if proxy is None:
            raise exceptions.AuthenticationFailed(
                "unknown or inactive proxy token: register the proxy on the Fleet page"
            )
        return AnonymousUser(), proxy

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="fleet"'


class ProxyTokenScheme(OpenApiAuthenticationExtension):
    """Documents the proxy token in the OpenAPI schema."""

    target_class = "routing.api.fleet.ProxyTokenAuthentication"
    name = "proxyToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "The proxy's FINOPS_PROXY_TOKEN."}


class IsProxy(permissions.BasePermission):
    message = "send Authorization: Bearer <proxy token>"

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, Proxy)


def _etag_matches(header: str, content_hash: str) -> bool:
    tags = [t.strip().removeprefix("W/").strip('"') for t in header.split(",") if t.strip()]
    return content_hash in tags or "*" in tags


class FleetBundleView(APIView):
    """The bundle this proxy should run; 304 when its If-None-Match already names it."""

    authentication_classes = [ProxyTokenAuthentication]
    permission_classes = [IsProxy]

    @extend_schema(responses={200: dict, 304: None, 404: dict})
    def get(self, request: Request) -> HttpResponse:
        bundle = proxy_target_bundle(request.auth)
        if bundle is None:
            return Response({"detail": "no bundle published for this proxy's pool yet"}, status=404)
        etag = f'"{bundle.content_hash}"'
        if _etag_matches(request.META.get("HTTP_IF_NONE_MATCH", ""), bundle.content_hash):
            response = HttpResponse(status=304)
        else:
            signed = bundle_signed_document(bundle.document)
            response = HttpResponse(canonical_json(signed), content_type="application/json")
        response["ETag"] = etag
        response["Cache-Control"] = "no-cache"
        return response


class BreakerReportSerializer(serializers.Serializer):
    """One small model's circuit breaker over the proxy's workers (routing/proxy/breaker.py `combine_reports`)."""

    model_group = serializers.CharField(max_length=100)
    state = serializers.ChoiceField(choices=["closed", "open", "half_open"])  # the most severe worker's
    open_since = serializers.CharField(allow_null=True, required=False, max_length=40)
    skipped = serializers.IntegerField(required=False, min_value=0)
    abandoned = serializers.IntegerField(required=False, min_value=0)
    workers = serializers.IntegerField(required=False, min_value=0)
    workers_open = serializers.IntegerField(required=False, min_value=0)


class WorkerReportSerializer(serializers.Serializer):
    """One worker process of the proxy, as it last wrote its state to the shared spool."""

    pid = serializers.IntegerField(min_value=0)
    shipping = serializers.BooleanField(required=False)
    records = serializers.IntegerField(required=False, min_value=0)


class HeartbeatSerializer(serializers.Serializer):
    applied_version = serializers.CharField(allow_null=True, allow_blank=True, required=False, max_length=80)
    applied_hash = serializers.CharField(allow_null=True, allow_blank=True, required=False, max_length=80)
    spool_depth = serializers.IntegerField(required=False, min_value=0)
    dead_letters = serializers.IntegerField(required=False, min_value=0)
    last_ship_at = serializers.CharField(allow_null=True, required=False)
    errors = serializers.ListField(child=serializers.CharField(allow_blank=True), required=False)
    restart_required = serializers.BooleanField(required=False)
    plugin_version = serializers.CharField(allow_blank=True, required=False, max_length=40)
    breakers = BreakerReportSerializer(many=True, required=False, max_length=100)
    workers = WorkerReportSerializer(many=True, required=False, max_length=256)
    pid = serializers.IntegerField(required=False, min_value=0)


class FleetHeartbeatView(APIView):
    """Record what a proxy runs and answer with the version it should run."""

    authentication_classes = [ProxyTokenAuthentication]
    permission_classes = [IsProxy]

    @extend_schema(request=HeartbeatSerializer, responses={200: dict})
    def post(self, request: Request) -> Response:
        serializer = HeartbeatSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        proxy = proxy_heartbeat(proxy=request.auth, report=dict(serializer.validated_data))
        target = proxy_target_bundle(proxy)
        return Response(
            {
                "target_version": target.version if target else None,
                "target_hash": target.content_hash if target else None,
            }
        )
