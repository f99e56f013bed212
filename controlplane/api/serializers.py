"""API shapes for teams, features and memberships. Writes go through the audited services."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from controlplane.models import AuditEntry, Feature, Membership, Team


def _as_drf_error(exc: DjangoValidationError) -> serializers.ValidationError:
    return serializers.ValidationError(
        exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
    )


class TeamSerializer(serializers.ModelSerializer):
    has_webhook = serializers.SerializerMethodField(
        help_text="Whether an alert webhook is set (its URL is write-only)."
    )

    class Meta:
        model = Team
        fields = [
            "code",
            "name",
            "slug",
            "description",
            "timezone",
            "webhook_url",
            "has_webhook",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["code", "created_at", "updated_at"]
        extra_kwargs = {"webhook_url": {"write_only": True}}  # a secret: anyone holding it can post as us

    def get_has_webhook(self, team: Team) -> bool:
        return bool(team.webhook_url)


class FeatureSerializer(serializers.ModelSerializer):
    team = serializers.SlugRelatedField(slug_field="slug", queryset=Team.objects.all())
    owner = serializers.SlugRelatedField(
        slug_field="username", queryset=get_user_model().objects.all(), required=False, allow_null=True
    )

    class Meta:
        model = Feature
        fields = [
            "code",
            "team",
            "name",
            "slug",
            "description",
            "owner",
            "is_active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["code", "created_at", "updated_at"]


class MembershipSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", queryset=get_user_model().objects.all())
    team = serializers.SlugRelatedField(
        slug_field="slug", queryset=Team.objects.all(), required=False, allow_null=True
    )

    class Meta:
        model = Membership
        fields = ["id", "user", "team", "role", "created_at"]
        read_only_fields = ["id", "created_at"]
        validators: list[Any] = []  # uniqueness is checked by the model's constraints in full_clean


class AuditEntrySerializer(serializers.ModelSerializer):
    team = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = AuditEntry
        fields = [
            "code",
            "created_at",
            "actor_name",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "team",
            "changes",
            "note",
            "request_id",
        ]
        read_only_fields = fields
