"""Admin views of spend: read-only (spend is written by ingest, rollups by ingest and rebuild_rollups)."""

from django.contrib import admin

from billing.models import IngestBatch, SpendEvent, SpendRollupHourly


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(IngestBatch)
class IngestBatchAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "proxy", "source", "records", "accepted", "duplicates", "mirrored_at"]
    list_filter = ["source"]


@admin.register(SpendEvent)
class SpendEventAdmin(ReadOnlyAdmin):
    list_display = [
        "start_time",
        "call_id",
        "attempt",
        "feature",
        "route",
        "model_group",
        "status",
        "cost_usd",
    ]
    search_fields = ["call_id", "event_id"]
    show_full_result_count = False  # no count(*) over every partition
    list_select_related = ["feature"]


@admin.register(SpendRollupHourly)
class SpendRollupHourlyAdmin(ReadOnlyAdmin):
    list_display = ["hour", "feature", "route", "model", "fallback_reason", "arm", "requests", "cost_usd"]
    list_filter = ["route", "fallback_reason"]
    list_select_related = ["feature"]
