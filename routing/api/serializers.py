"""API shapes for routing and the fleet. Writes go through the audited services."""

from __future__ import annotations

from rest_framework import serializers

from controlplane.models import Feature
from routing.models import (
    DEPLOYMENT_FIELDS,
    POLICY_FIELDS,
    Bundle,
    FeatureKey,
    ModelDeployment,
    Proxy,
    Rollout,
    RolloutTarget,
    RoutingPolicy,
    ServiceURLValidator,
)
from routing.selectors import proxy_target_bundle

DEPLOYMENT_REF = {
    "slug_field": "name",
    "queryset": ModelDeployment.objects.all(),
    "required": False,
    "allow_null": True,
}


class DeploymentSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelDeployment
        fields = ["code", *DEPLOYMENT_FIELDS, "created_at", "updated_at"]
        read_only_fields = ["code", "created_at", "updated_at"]
        validators: list = []


class PolicySerializer(serializers.ModelSerializer):
    feature = serializers.SlugRelatedField(
        slug_field="slug", queryset=Feature.objects.all(), required=False, allow_null=True
    )
    small_deployment = serializers.SlugRelatedField(**DEPLOYMENT_REF)
    frontier_deployment = serializers.SlugRelatedField(**DEPLOYMENT_REF)

    class Meta:
        model = RoutingPolicy
        fields = ["code", *POLICY_FIELDS, "created_at", "updated_at"]
        read_only_fields = ["code", "created_at", "updated_at"]
        validators: list = []


class FeatureKeySerializer(serializers.ModelSerializer):
    feature = serializers.SlugRelatedField(slug_field="slug", queryset=Feature.objects.all())
    revoked = serializers.BooleanField(source="is_revoked", read_only=True)

    class Meta:
        model = FeatureKey
        fields = ["code", "feature", "name", "prefix", "expires_at", "revoked", "revoked_at", "created_at"]
        read_only_fields = ["code", "prefix", "revoked", "revoked_at", "created_at"]


class BundleSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Bundle
        fields = ["code", "number", "version", "content_hash", "note", "created_by", "created_at"]
        read_only_fields = fields


class BundleDetailSerializer(BundleSerializer):
    class Meta(BundleSerializer.Meta):
        fields = [*BundleSerializer.Meta.fields, "document", "config_yaml"]
        read_only_fields = fields


class PublishSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=500)
    pool = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")


class RolloutRequestSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    pool = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")


class RolloutTargetSerializer(serializers.ModelSerializer):
    proxy = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = RolloutTarget
        fields = ["proxy", "is_canary", "status", "attempts", "error", "started_at", "finished_at"]
        read_only_fields = fields


class RolloutSerializer(serializers.ModelSerializer):
    bundle = serializers.SlugRelatedField(slug_field="version", read_only=True)
    previous_bundle = serializers.SlugRelatedField(slug_field="version", read_only=True)
    targets = RolloutTargetSerializer(many=True, read_only=True)

    class Meta:
        model = Rollout
        fields = [
            "code",
            "bundle",
            "previous_bundle",
            "kind",
            "pool",
            "status",
            "error",
            "note",
            "started_at",
            "finished_at",
            "created_at",
            "targets",
        ]
        read_only_fields = fields


class ProxySerializer(serializers.ModelSerializer):
    target_version = serializers.SerializerMethodField()
    # DRF's URLField would add Django's URLValidator back, which refuses service names (http://proxy-a:4000)
    base_url = serializers.CharField(
        max_length=200,
        validators=[ServiceURLValidator()],
        help_text="Where the control plane pushes bundles, e.g. http://10.0.0.5:4000 or http://proxy-a:4000",
    )

    class Meta:
        model = Proxy
        fields = [
            "code",
            "name",
            "base_url",
            "pool",
            "is_canary",
            "is_active",
            "last_heartbeat_at",
            "applied_version",
            "applied_hash",
            "target_version",
            "last_report",
            "created_at",
        ]
        read_only_fields = [
            "code",
            "last_heartbeat_at",
            "applied_version",
            "applied_hash",
            "target_version",
            "last_report",
            "created_at",
        ]

    def get_target_version(self, proxy: Proxy) -> str | None:
        target = proxy_target_bundle(proxy)
        return target.version if target else None
