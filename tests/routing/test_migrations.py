"""Moving Proxy from controlplane to routing (routing 0006, billing 0010, controlplane 0005) moves no data:
rows written before the move, and every row that points at them, are there after it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from billing.models import Alert, BlockedCallCount, IngestBatch, SpendEvent
from controlplane.models import AuditEntry
from routing.models import Proxy, RolloutTarget

BEFORE_MOVE = [
    ("controlplane", "0004_mask_webhook_urls_in_audit"),
    ("routing", "0005_adjustment_proposals"),
    ("billing", "0009_spend_event_signals"),
    ("contenttypes", "0002_remove_content_type_name"),  # already applied: here for the historical models
    ("auth", "0012_alter_user_first_name_max_length"),
]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def _seed_before_move(apps) -> int:
    """Fleet rows as the pre-move schema wrote them, through the historical models; returns the proxy id."""
    now = timezone.now()
    team = apps.get_model("controlplane", "Team").objects.create(name="Seed", slug="seed")
    feature = apps.get_model("controlplane", "Feature").objects.create(team=team, name="Seed", slug="seed")
    bundle = apps.get_model("routing", "Bundle").objects.create(
        number=1,
        version="v1-seed",
        content_hash="c" * 64,
        source_hash="s" * 64,
        document={},
        config_yaml="a: 1",
    )
    proxy = apps.get_model("controlplane", "Proxy").objects.create(
        name="seed-proxy",
        base_url="http://proxy-a:4000",
        pool="blue",
        is_canary=True,
        token_hash="t" * 64,
        signing_key="k" * 64,
        push_credential="sealed",
        target_bundle=bundle,
    )
    rollout = apps.get_model("routing", "Rollout").objects.create(
        bundle=bundle, pool="blue", status="succeeded"
    )
    apps.get_model("routing", "RolloutTarget").objects.create(
        rollout=rollout, proxy=proxy, is_canary=True, status="applied"
    )
    apps.get_model("billing", "Alert").objects.create(
        key=f"proxy_stale:{proxy.pk}",
        kind="proxy_stale",
        proxy=proxy,
        title="stale",
        opened_at=now,
        last_seen_at=now,
    )
    batch = apps.get_model("billing", "IngestBatch").objects.create(
        proxy=proxy, received_at=now, records=1, accepted=1
    )
    apps.get_model("billing", "SpendEvent").objects.create(
        batch=batch,
        proxy=proxy,
        event_id="e1",
        call_id="call-1",
        attempt=1,
        team=team,
        feature=feature,
        start_time=now,
        end_time=now + timedelta(seconds=1),
        route="small",
        model_group="slm",
        status="success",
    )
    apps.get_model("billing", "BlockedCallCount").objects.create(
        proxy=proxy, event_id="b1", team=team, feature=feature, reason="budget", count=3,
        window_start=now, window_end=now, received_at=now,
    )  # fmt: skip
    apps.get_model("controlplane", "AuditEntry").objects.create(
        action="create", object_type="controlplane.Proxy", object_id=str(proxy.pk), object_repr=proxy.name
    )
    proxy_type = apps.get_model("contenttypes", "ContentType").objects.get(
        app_label="controlplane", model="proxy"
    )
    editors = apps.get_model("auth", "Group").objects.create(name="fleet editors")
    editors.permissions.add(
        apps.get_model("auth", "Permission").objects.get(content_type=proxy_type, codename="change_proxy")
    )
    return proxy.pk


@pytest.mark.django_db(transaction=True)
def test_fleet_rows_survive_the_move_of_proxy_to_routing():
    leaves = MigrationExecutor(connection).loader.graph.leaf_nodes()
    try:
        proxy_id = _seed_before_move(_migrate(BEFORE_MOVE))
    finally:
        _migrate(leaves)  # the rest of the suite runs on the current schema whatever happens above

    proxy = Proxy.objects.get(pk=proxy_id)
    assert Proxy._meta.db_table == "controlplane_proxy"
    assert (proxy.name, proxy.base_url, proxy.pool, proxy.is_canary) == (
        "seed-proxy",
        "http://proxy-a:4000",
        "blue",
        True,
    )
    assert (proxy.token_hash, proxy.push_credential, proxy.target_bundle.version) == (
        "t" * 64,
        "sealed",
        "v1-seed",
    )
    assert RolloutTarget.objects.get(proxy=proxy).status == "applied"
    assert Alert.objects.get(proxy=proxy).kind == "proxy_stale"
    assert IngestBatch.objects.get(proxy=proxy).accepted == 1
    assert SpendEvent.objects.get(proxy=proxy).call_id == "call-1"
    assert BlockedCallCount.objects.get(proxy=proxy).count == 3
    # permissions on proxies stay granted: the content type moved with the model
    editors = Group.objects.get(name="fleet editors")
    assert [(p.content_type.app_label, p.codename) for p in editors.permissions.all()] == [
        ("routing", "change_proxy")
    ]
    assert ContentType.objects.get_for_model(Proxy).app_label == "routing"
    # the audit log names the model by its new label, old entries included
    assert list(AuditEntry.objects.filter(object_id=str(proxy_id)).values_list("object_type", flat=True)) == [
        "routing.Proxy"
    ]
