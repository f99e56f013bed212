"""The Datadog mirror: real DogStatsD packets on a UDP socket, each batch sent once, agent outages harmless."""

from __future__ import annotations

import socket
from decimal import Decimal

import pytest

from billing import tasks
from billing.models import IngestBatch
from controlplane.celery import app as celery_app
from tests.billing.conftest import make_record, post_batch

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent(settings):
    """A fake DogStatsD agent: a UDP socket the settings point at."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.5)
    settings.DATADOG_ENABLED = True
    settings.DATADOG_AGENT_HOST = "127.0.0.1"
    settings.DATADOG_AGENT_PORT = sock.getsockname()[1]
    settings.ENVIRONMENT = "test-env"
    yield sock
    sock.close()


def received(sock: socket.socket) -> list[tuple[str, float, str, frozenset[str]]]:
    """(metric, value, type, tags) for every line that arrived."""
    lines = []
    while True:
        try:
            packet = sock.recv(65535)
        except TimeoutError:
            return lines
        for line in packet.decode().splitlines():
            head, kind, *rest = line.split("|")
            name, value = head.rsplit(":", 1)
            tags = next((part[1:] for part in rest if part.startswith("#")), "")
            lines.append((name, float(value), kind, frozenset(tags.split(",")) if tags else frozenset()))


def ingest_and_mirror(client, records, django_capture_on_commit_callbacks) -> int:
    with django_capture_on_commit_callbacks() as callbacks:
        assert post_batch(client, records).status_code == 200
    assert len(callbacks) == 1  # the mirror is queued only once the batch commits
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True  # no worker in tests: .delay() runs the task here
    try:
        callbacks[0]()
    finally:
        celery_app.conf.task_always_eager = eager
    return IngestBatch.objects.get().pk


BASE_TAGS = {"team:support", "feature:ticket-summary", "route:small", "arm:none", "env:test-env"}


def test_batch_metrics_arrive_with_tags(client, proxy, feature, agent, django_capture_on_commit_callbacks):
    records = [
        make_record(latency_ms=100, cost_usd=Decimal("0.001"), baseline_cost_usd=Decimal("0.01")),
        make_record(call_id="fb", latency_ms=1500, status="error", cost_usd=Decimal("0")),
        make_record(
            call_id="fb",
            attempt=2,
            model_group="frontier",
            deployment="anthropic/claude-sonnet-4-5",
            latency_ms=800,
            fallback=True,
            fallback_reason="timeout",
            cost_usd=Decimal("0.02"),
            baseline_cost_usd=Decimal("0.02"),
            input_tokens=100,
            output_tokens=50,
        ),
    ]
    batch_id = ingest_and_mirror(client, records, django_capture_on_commit_callbacks)
    lines = received(agent)
    slm = frozenset(BASE_TAGS | {"model:openai/llama-3-8b"})
    frontier = frozenset(BASE_TAGS | {"model:anthropic/claude-sonnet-4-5"})
    counts = {(name, tags): value for name, value, kind, tags in lines if kind == "c"}
    assert counts[("finops.spend.requests", slm)] == 2
    assert ("finops.spend.requests", frontier) not in counts  # the fallback attempt is not a new request
    assert counts[("finops.spend.attempts", frontier)] == 1
    assert counts[("finops.spend.errors", slm)] == 1
    assert counts[("finops.spend.cost_usd", slm)] == pytest.approx(0.001)
    assert counts[("finops.spend.cost_usd", frontier)] == pytest.approx(0.02)
    assert counts[("finops.spend.savings_usd", slm)] == pytest.approx(0.009)
    assert counts[("finops.spend.tokens.input", slm)] == 200
    assert counts[("finops.spend.tokens.output", frontier)] == 50
    assert counts[("finops.spend.fallbacks", frontier | {"reason:timeout"})] == 1
    latencies = sorted(value for name, value, kind, tags in lines if name == "finops.spend.latency_ms")
    assert latencies == [100, 800, 1500]
    assert {kind for name, _, kind, _ in lines if name == "finops.spend.latency_ms"} == {"d"}
    assert IngestBatch.objects.get(pk=batch_id).mirrored_at is not None

    assert tasks.spend_batch_mirror(batch_id) == 0  # claimed already: nothing is sent twice
    assert received(agent) == []


def test_agent_down_breaks_nothing_and_sends_once(client, proxy, feature, settings):
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))
    settings.DATADOG_ENABLED = True
    settings.DATADOG_AGENT_PORT = dead.getsockname()[1]
    dead.close()  # nothing listens there any more
    post_batch(client, [make_record(), make_record()])
    batch = IngestBatch.objects.get()
    assert tasks.spend_batch_mirror(batch.pk) > 0  # sent into the void without raising
    batch.refresh_from_db()
    assert batch.mirrored_at is not None
    assert tasks.spend_batch_mirror(batch.pk) == 0


def test_missing_batch_is_a_quiet_no_op(db, settings):
    settings.DATADOG_ENABLED = True
    assert tasks.spend_batch_mirror(987654) == 0


def test_disabled_mirror_queues_nothing(client, proxy, feature, settings, django_capture_on_commit_callbacks):
    settings.DATADOG_ENABLED = False
    with django_capture_on_commit_callbacks() as callbacks:
        assert post_batch(client, [make_record()]).status_code == 200
    assert callbacks == []


def test_duplicate_only_batch_queues_nothing(
    client, proxy, feature, agent, django_capture_on_commit_callbacks
):
    records = [make_record()]
    post_batch(client, records)
    with django_capture_on_commit_callbacks() as callbacks:
        assert post_batch(client, records).json() == {
            "accepted": 0,
            "duplicates": 1,
            "rejected": [],
            "blocked_accepted": 0,
        }
    assert callbacks == []


def test_batches_whose_mirror_task_was_lost_are_caught_up_once(client, proxy, feature, agent):
    from datetime import timedelta

    from django.utils import timezone

    # the broker was down at ingest: the on-commit callback never ran, so nothing was mirrored
    assert post_batch(client, [make_record(latency_ms=120)]).status_code == 200
    batch = IngestBatch.objects.get()
    assert batch.mirrored_at is None
    assert tasks.spend_mirror_catch_up() == 0  # a fresh batch is left to its own queued task
    IngestBatch.objects.filter(pk=batch.pk).update(received_at=timezone.now() - timedelta(minutes=5))

    sent = tasks.spend_mirror_catch_up()
    lines = received(agent)
    assert sent > 0 and any(name == "finops.spend.requests" for name, *_ in lines)
    batch.refresh_from_db()
    assert batch.mirrored_at is not None
    assert tasks.spend_mirror_catch_up() == 0 and received(agent) == []  # never sent twice
