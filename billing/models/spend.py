"""Spend: raw attempt events (partitioned by month on Postgres), ingest batches and hourly rollups."""

from __future__ import annotations

import uuid

from django.db import models

from controlplane.models import Feature, Team
from routing.engine import spend
from routing.models import Proxy

MONEY = {"max_digits": 20, "decimal_places": 10}

# Upper bounds (ms, exclusive) of the latency histogram buckets: log-spaced, the last bucket is open.
LATENCY_BOUNDS_MS: tuple[int, ...] = (
    10, 20, 35, 60, 100, 150, 250, 400, 600, 1000, 1500, 2500, 4000, 6000, 10000, 15000, 25000, 40000, 60000,
)  # fmt: skip
LATENCY_BUCKETS = [f"lat_b{i:02d}" for i in range(len(LATENCY_BOUNDS_MS) + 1)]
SCORE_BUCKETS = [f"score_b{i}" for i in range(10)]  # ten equal buckets over [0, 1]; 1.0 falls in the last
# Fallback attempts by the score of their call (every attempt carries the call's decision stamp).
FALLBACK_SCORE_BUCKETS = [f"fallback_score_b{i}" for i in range(10)]


class IngestBatch(models.Model):
    """One accepted spend batch from a proxy; `mirrored_at` is claimed once by the Datadog mirror."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    proxy = models.ForeignKey(Proxy, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    received_at = models.DateTimeField(db_index=True)
    records = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    source = models.CharField(max_length=16, default="proxy")  # proxy or seed
    mirrored_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        verbose_name_plural = "ingest batches"

    def __str__(self) -> str:
        return f"batch {self.pk}: {self.accepted} accepted, {self.duplicates} duplicates"


class SpendEvent(models.Model):
    """One attempt at serving one call (a SpendRecord as stored); unique per proxy, event id and start time.

    On Postgres the table is range-partitioned by month on `start_time` (see migration 0002), so its
    primary key is (id, start_time) in the database; `id` alone is still unique (one identity sequence).
    Foreign keys carry no database constraint: ingest resolves them and rollups protect teams/features.
    """

    batch = models.ForeignKey(
        IngestBatch,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )
    proxy = models.ForeignKey(
        Proxy,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )
    event_id = models.CharField(max_length=64)
    call_id = models.CharField(max_length=128)
    attempt = models.PositiveSmallIntegerField()
    team = models.ForeignKey(
        Team, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    feature = models.ForeignKey(
        Feature, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    start_time = models.DateTimeField()
    end_time = models.DateTimeField()
    first_token_time = models.DateTimeField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    route = models.CharField(max_length=16)
    model_group = models.CharField(max_length=200)
    deployment = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(**MONEY, default=0)
    baseline_cost_usd = models.DecimalField(**MONEY, default=0)
    error_class = models.CharField(max_length=200, blank=True)
    fallback = models.BooleanField(default=False)
    fallback_reason = models.CharField(max_length=32, blank=True)
    score = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    decision_reason = models.CharField(max_length=200, blank=True)
    bundle_version = models.CharField(max_length=80, blank=True)
    experiment = models.CharField(max_length=64, blank=True)
    arm = models.CharField(max_length=64, blank=True)
    end_user = models.CharField(max_length=128, blank=True)
    stream = models.BooleanField(default=False)
    # The scorer's task-type signals of a scored call: what a feature's adjustment is refitted from.
    signals = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            # Partitioned tables need the partition key in every unique constraint (docs/spend.md).
            models.UniqueConstraint(
                fields=["proxy", "event_id", "start_time"], name="spendevent_once_per_proxy"
            ),
        ]
        indexes = [
            models.Index(fields=["batch"], name="spendevent_batch"),
            models.Index(fields=["call_id"], name="spendevent_call"),
            models.Index(fields=["feature", "start_time"], name="spendevent_feature_time"),
        ]

    def __str__(self) -> str:
        return f"{self.call_id} attempt {self.attempt}"

    @property
    def model(self) -> str:
        """The model this attempt went to: the deployment when known, else its model group."""
        return spend.model_name(self.deployment, self.model_group)


class SpendRollupHourly(models.Model):
    """Spend per hour × team × feature × route × model × fallback reason × experiment arm; dashboards read this.

    requests: attempt rows with attempt = 1 (one per call); fallbacks: rows with fallback = true (the
    plugin marks one attempt per call); baseline: one row per served request (see billing.rollups).
    """

    hour = models.DateTimeField()
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="+")
    feature = models.ForeignKey(Feature, on_delete=models.PROTECT, related_name="+")
    route = models.CharField(max_length=16)
    model = models.CharField(max_length=200)
    fallback_reason = models.CharField(max_length=32, blank=True)
    experiment = models.CharField(max_length=64, blank=True)
    arm = models.CharField(max_length=64, blank=True)
    requests = models.BigIntegerField(default=0)
    attempts = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    fallbacks = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(**MONEY, default=0)
    baseline_cost_usd = models.DecimalField(**MONEY, default=0)
    latency_ms_sum = models.BigIntegerField(default=0)
    lat_b00 = models.BigIntegerField(default=0)
    lat_b01 = models.BigIntegerField(default=0)
    lat_b02 = models.BigIntegerField(default=0)
    lat_b03 = models.BigIntegerField(default=0)
    lat_b04 = models.BigIntegerField(default=0)
    lat_b05 = models.BigIntegerField(default=0)
    lat_b06 = models.BigIntegerField(default=0)
    lat_b07 = models.BigIntegerField(default=0)
    lat_b08 = models.BigIntegerField(default=0)
    lat_b09 = models.BigIntegerField(default=0)
    lat_b10 = models.BigIntegerField(default=0)
    lat_b11 = models.BigIntegerField(default=0)
    lat_b12 = models.BigIntegerField(default=0)
    lat_b13 = models.BigIntegerField(default=0)
    lat_b14 = models.BigIntegerField(default=0)
    lat_b15 = models.BigIntegerField(default=0)
    lat_b16 = models.BigIntegerField(default=0)
    lat_b17 = models.BigIntegerField(default=0)
    lat_b18 = models.BigIntegerField(default=0)
    lat_b19 = models.BigIntegerField(default=0)
    score_b0 = models.BigIntegerField(default=0)
    score_b1 = models.BigIntegerField(default=0)
    score_b2 = models.BigIntegerField(default=0)
    score_b3 = models.BigIntegerField(default=0)
    score_b4 = models.BigIntegerField(default=0)
    score_b5 = models.BigIntegerField(default=0)
    score_b6 = models.BigIntegerField(default=0)
    score_b7 = models.BigIntegerField(default=0)
    score_b8 = models.BigIntegerField(default=0)
    score_b9 = models.BigIntegerField(default=0)
    fallback_score_b0 = models.BigIntegerField(default=0)
    fallback_score_b1 = models.BigIntegerField(default=0)
    fallback_score_b2 = models.BigIntegerField(default=0)
    fallback_score_b3 = models.BigIntegerField(default=0)
    fallback_score_b4 = models.BigIntegerField(default=0)
    fallback_score_b5 = models.BigIntegerField(default=0)
    fallback_score_b6 = models.BigIntegerField(default=0)
    fallback_score_b7 = models.BigIntegerField(default=0)
    fallback_score_b8 = models.BigIntegerField(default=0)
    fallback_score_b9 = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["hour"]
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "team", "feature", "route", "model", "fallback_reason", "experiment", "arm"],
                name="spendrollup_hourly_key",
            )
        ]
        indexes = [models.Index(fields=["hour", "feature"], name="spendrollup_hour_feature")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}:00 {self.feature_id} {self.model}"

    @property
    def savings_usd(self):
        return self.baseline_cost_usd - self.cost_usd


class SpendAttemptMeasures(models.Model):
    """Read-only database view (migration 0008): each attempt row of SpendEvent with the rollup's key and
    per-row measures (requests = 1 on a first attempt, baseline only on the baseline row, one latency and
    score bucket set to 1...), so summing it over any rows gives what the rollups would. The dashboards read
    it instead of the rollups for filters the rollups do not carry: the end user.
    Filter it on `start_time` (the partition key) as well as `hour`, so Postgres prunes partitions.
    """

    id = models.BigIntegerField(primary_key=True)
    start_time = models.DateTimeField()
    end_user = models.CharField(max_length=128)
    hour = models.DateTimeField()
    team = models.ForeignKey(Team, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    feature = models.ForeignKey(Feature, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    route = models.CharField(max_length=16)
    model = models.CharField(max_length=200)
    fallback_reason = models.CharField(max_length=32)
    experiment = models.CharField(max_length=64)
    arm = models.CharField(max_length=64)

    class Meta:
        managed = False
        db_table = "billing_spend_attempt_measures"

    def __str__(self) -> str:
        return f"attempt {self.pk} of {self.end_user or 'no end user'}"


for _name in ["requests", "attempts", "errors", "fallbacks", "input_tokens", "output_tokens", "latency_ms_sum",
              *LATENCY_BUCKETS, *SCORE_BUCKETS, *FALLBACK_SCORE_BUCKETS]:  # fmt: skip
    SpendAttemptMeasures.add_to_class(_name, models.BigIntegerField(default=0))
for _name in ["cost_usd", "baseline_cost_usd"]:
    SpendAttemptMeasures.add_to_class(_name, models.DecimalField(**MONEY, default=0))


class BlockedCallCount(models.Model):
    """Calls a proxy refused for one feature in a window (revoked/expired key, over budget, endpoint not served)."""

    proxy = models.ForeignKey(Proxy, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    event_id = models.CharField(max_length=64)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="+")
    reason = models.CharField(max_length=16)
    count = models.PositiveIntegerField()
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    received_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["proxy", "event_id"], name="blockedcallcount_once_per_proxy"),
        ]
        indexes = [models.Index(fields=["feature", "window_end"], name="blockedcall_feature_time")]

    def __str__(self) -> str:
        return f"{self.feature_id}: {self.count} blocked ({self.reason})"
