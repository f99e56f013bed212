"""Admin for routing: read-mostly views; changes go through the pages and API so they are audited."""

from django.contrib import admin

from routing.models import (
    AdjustmentProposal,
    Bundle,
    FeatureKey,
    ModelDeployment,
    Proxy,
    Rollout,
    RolloutTarget,
    RoutingPolicy,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(ModelDeployment)
class ModelDeploymentAdmin(ReadOnlyAdmin):
    list_display = ["name", "model_group", "tier", "litellm_model", "is_active"]


@admin.register(RoutingPolicy)
class RoutingPolicyAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "small_deployment", "frontier_deployment", "threshold", "target_small_share"]


@admin.register(FeatureKey)
class FeatureKeyAdmin(ReadOnlyAdmin):
    list_display = ["prefix", "feature", "name", "expires_at", "revoked_at"]


@admin.register(Bundle)
class BundleAdmin(ReadOnlyAdmin):
    list_display = ["version", "content_hash", "created_by", "created_at", "note"]


@admin.register(Proxy)
class ProxyAdmin(admin.ModelAdmin):
    list_display = ["name", "pool", "base_url", "is_canary", "applied_version", "last_heartbeat_at"]


class RolloutTargetInline(admin.TabularInline):
    model = RolloutTarget
    extra = 0
    can_delete = False
    readonly_fields = ["proxy", "is_canary", "status", "attempts", "error", "started_at", "finished_at"]


@admin.register(Rollout)
class RolloutAdmin(ReadOnlyAdmin):
    list_display = ["bundle", "kind", "pool", "status", "created_at", "finished_at"]
    inlines = [RolloutTargetInline]


@admin.register(AdjustmentProposal)
class AdjustmentProposalAdmin(ReadOnlyAdmin):
    list_display = [
        "feature",
        "status",
        "labels",
        "needed_labels",
        "scorer_weights",
        "created_at",
        "decided_by",
    ]
    list_filter = ["status"]
