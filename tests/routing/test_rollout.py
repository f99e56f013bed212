"""Rollouts: canary first, then the rest in parallel; a failing canary rolls back; a dead proxy makes it partial.

The first tests use a small stand-in for the plugin's push endpoint (fast, no LiteLLM); the ones
marked `proxy` run three real LiteLLM proxies with the plugin against a live control plane.
"""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from controlplane.models import AuditEntry
from routing import services
from routing.engine import signing
from routing.engine.bundle import validate_bundle
from routing.models import Bundle, Proxy, Rollout, RolloutKind, RolloutStatus, TargetStatus
from routing.services import fleet as fleet_services
from tests.routing.fleet_support import make_routing


class PluginStandIn:
    """The plugin's push and status endpoints, in memory: validates like the plugin, or refuses on demand."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.applied: dict[str, Any] | None = None
        self.reject = False  # refuse every bundle
        self.reject_versions: set[str] = set()  # refuse only these
        self.pushes = 0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def _send(self, status: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_PUT(self) -> None:
                doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stand_in.pushes += 1
                if self.headers.get("Authorization") != f"Bearer {stand_in.token}":
                    return self._send(401, {"errors": ["bad token"]})
                refused = stand_in.reject or doc.get("version") in stand_in.reject_versions
                errors = ["$.schema: refused on purpose by the test"] if refused else validate_bundle(doc)
                if errors:
                    return self._send(422, {"errors": errors})
                stand_in.applied = doc
                self._send(200, {"applied_version": doc["version"], "applied_hash": doc["content_hash"]})

            def do_GET(self) -> None:
                applied = stand_in.applied or {}
                self._send(
                    200,
                    {"applied_version": applied.get("version"), "applied_hash": applied.get("content_hash")},
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def eager_celery():
    """Run queued tasks inline, so a publish's on-commit rollout happens inside the test."""
    from controlplane.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


@pytest.fixture
def fast_fleet_settings(settings):
    settings.FLEET_CANARY_WINDOW_S = 0.3
    settings.FLEET_PUSH_ATTEMPTS = 2
    settings.FLEET_PUSH_BACKOFF_S = 0.05
    settings.FLEET_PUSH_TIMEOUT_S = 3
    return settings


@pytest.fixture
def stand_ins(db, fast_fleet_settings):
    """Three registered proxies served by stand-ins; the first is the canary."""
    made = []
    for i in range(3):
        proxy, token = fleet_services.proxy_create(
            actor=None, name=f"proxy-{i}", base_url="http://127.0.0.1:9", is_canary=i == 0
        )
        stand_in = PluginStandIn(signing.split_credential(token)[0])  # pushes carry the token half only
        Proxy.objects.filter(pk=proxy.pk).update(base_url=stand_in.url)
        made.append((Proxy.objects.get(pk=proxy.pk), stand_in))
    yield made
    for _, stand_in in made:
        stand_in.stop()


def _publish(django_capture_on_commit_callbacks, note="test") -> tuple[Bundle, Rollout]:
    with django_capture_on_commit_callbacks(execute=True):
        bundle = services.bundle_publish(actor=None, note=note)
    return bundle, bundle.rollouts.get()


@pytest.mark.django_db
def test_publish_rolls_out_to_every_proxy(stand_ins, feature, django_capture_on_commit_callbacks):
    make_routing()
    bundle, rollout = _publish(django_capture_on_commit_callbacks)
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.SUCCEEDED
    assert {t.status for t in rollout.targets.all()} == {TargetStatus.APPLIED}
    for proxy, stand_in in stand_ins:
        assert stand_in.applied["content_hash"] == bundle.content_hash
        proxy.refresh_from_db()
        assert proxy.target_bundle_id == bundle.pk
    assert rollout.targets.get(is_canary=True).proxy.name == "proxy-0"
    assert AuditEntry.objects.filter(action="publish", object_type="routing.Bundle").count() == 1


@pytest.mark.django_db
def test_canary_goes_first_and_alone(stand_ins, feature, django_capture_on_commit_callbacks):
    make_routing()
    canary_proxy, canary = stand_ins[0]
    canary.reject = True
    _, rollout = _publish(django_capture_on_commit_callbacks)
    assert canary.pushes == 1  # a 422 is not retried
    assert all(stand_in.pushes == 0 for _, stand_in in stand_ins[1:])


@pytest.mark.django_db
def test_canary_rejection_rolls_back_to_the_previous_bundle(
    stand_ins, feature, django_capture_on_commit_callbacks
):
    _, _, default = make_routing()
    first, _ = _publish(django_capture_on_commit_callbacks, "v1")
    services.policy_update(actor=None, policy=default, threshold=Decimal("0.4"))
    stand_ins[0][1].reject_versions = {"v2"}
    second, rollout = _publish(django_capture_on_commit_callbacks, "v2")
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.ROLLED_BACK
    assert "refused on purpose" in rollout.error
    canary_target = rollout.targets.get(is_canary=True)
    assert canary_target.status == TargetStatus.ROLLED_BACK
    assert "back on v1" in canary_target.error
    assert set(rollout.targets.filter(is_canary=False).values_list("status", flat=True)) == {
        TargetStatus.SKIPPED
    }
    for proxy, stand_in in stand_ins:
        proxy.refresh_from_db()
        assert proxy.target_bundle_id == first.pk
        assert stand_in.applied["content_hash"] == first.content_hash
    assert AuditEntry.objects.filter(action="rollback", object_type="routing.Rollout").exists()


@pytest.mark.realclock
@pytest.mark.django_db
def test_canary_that_goes_away_during_the_window_rolls_back(
    stand_ins, feature, django_capture_on_commit_callbacks, settings
):
    _, _, default = make_routing()
    first, _ = _publish(django_capture_on_commit_callbacks, "v1")
    services.policy_update(actor=None, policy=default, threshold=Decimal("0.4"))
    settings.FLEET_CANARY_WINDOW_S = 2.0
    canary = stand_ins[0][1]
    threading.Timer(0.4, canary.stop).start()  # applies, then dies inside the health window
    _, rollout = _publish(django_capture_on_commit_callbacks, "v2")
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.ROLLED_BACK
    assert "stopped answering" in rollout.error
    assert all(s.applied["content_hash"] == first.content_hash for _, s in stand_ins[1:])


@pytest.mark.django_db
def test_dead_proxy_makes_the_rollout_partial_without_delaying_the_others(
    stand_ins, feature, django_capture_on_commit_callbacks, settings
):
    make_routing()
    settings.FLEET_PUSH_ATTEMPTS = 3
    settings.FLEET_PUSH_BACKOFF_S = 0.2
    dead_proxy, dead = stand_ins[2]
    dead.stop()
    bundle, rollout = _publish(django_capture_on_commit_callbacks)
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.PARTIAL
    dead_target = rollout.targets.get(proxy=dead_proxy)
    assert dead_target.status == TargetStatus.UNREACHABLE and dead_target.attempts == 3
    live = rollout.targets.get(proxy=stand_ins[1][0])
    assert live.status == TargetStatus.APPLIED
    assert live.finished_at < dead_target.finished_at  # the live one did not wait for the retries
    dead_proxy.refresh_from_db()
    assert dead_proxy.target_bundle_id == bundle.pk  # it heals by pulling this when it is back


@pytest.mark.django_db
def test_manual_rollback_pushes_an_earlier_version_to_all(
    stand_ins, feature, django_capture_on_commit_callbacks
):
    _, _, default = make_routing()
    first, _ = _publish(django_capture_on_commit_callbacks, "v1")
    services.policy_update(actor=None, policy=default, threshold=Decimal("0.4"))
    _publish(django_capture_on_commit_callbacks, "v2")
    with django_capture_on_commit_callbacks(execute=True):
        rollout = services.rollout_rollback(actor=None, bundle=first, note="v2 misroutes")
    rollout.refresh_from_db()
    assert rollout.kind == RolloutKind.ROLLBACK and rollout.status == RolloutStatus.SUCCEEDED
    assert not rollout.targets.filter(is_canary=True).exists()
    assert all(s.applied["content_hash"] == first.content_hash for _, s in stand_ins)
    assert AuditEntry.objects.filter(action="rollback", note="v2 misroutes").exists()


@pytest.mark.django_db
def test_rollout_runs_once_and_a_second_cannot_start_meanwhile(stand_ins, feature):
    make_routing()
    bundle = services.bundle_publish(actor=None, note="v1")  # on_commit never fires here: stays pending
    rollout = bundle.rollouts.get()
    with pytest.raises(Exception, match="still running"):
        services.rollout_start(actor=None, bundle=bundle)
    services.rollout_execute(rollout_id=rollout.pk)
    services.rollout_execute(rollout_id=rollout.pk)  # redelivered task: no second push
    assert all(s.pushes == 1 for _, s in stand_ins)


@pytest.mark.django_db
def test_publish_without_changes_is_refused(stand_ins, feature, django_capture_on_commit_callbacks):
    make_routing()
    _publish(django_capture_on_commit_callbacks)
    with pytest.raises(Exception, match="Nothing changed since v1"):
        services.bundle_publish(actor=None, note="again")


@pytest.mark.django_db
def test_invalid_bundle_is_refused_with_readable_errors(db):
    with pytest.raises(services.BundleRejected) as caught:
        services.bundle_publish(actor=None, note="empty")
    assert any("no default policy" in e for e in caught.value.errors)
    assert not Bundle.objects.exists()


@pytest.mark.django_db
def test_task_returns_quietly_when_the_rollout_is_gone(db):
    from routing.tasks import rollout_run

    rollout_run(123456)


def test_reaper_fails_rollouts_whose_worker_died(stand_ins, feature):
    import datetime as dt

    make_routing()
    bundle = services.bundle_publish(actor=None, note="v1")
    rollout = bundle.rollouts.get()
    Rollout.objects.filter(pk=rollout.pk).update(created_at=rollout.created_at - dt.timedelta(hours=1))
    assert services.rollout_reap() == 1
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.FAILED


def test_push_does_not_follow_a_redirect_with_the_proxy_token():
    from tests.routing.proxy.test_security import CaptureServer, Redirector

    capture = CaptureServer()
    redirector = Redirector(capture.url)
    try:
        result = services.push_bundle(
            base_url=redirector.url,
            token="secret-token",
            body=b"{}",
            expected_hash="x",
            attempts=1,
            backoff_s=0,
            timeout_s=3,
        )
    finally:
        redirector.stop()
        capture.stop()
    assert redirector.hits == 1 and capture.authorizations == []
    assert result.status != "applied"


@pytest.mark.django_db
def test_pushed_and_pulled_bundles_are_signed_by_the_control_plane(
    stand_ins, feature, django_capture_on_commit_callbacks, client
):
    from routing.devtools.harness import dev_public_key
    from routing.engine import signing

    make_routing()
    bundle, _ = _publish(django_capture_on_commit_callbacks, "v1")
    pushed = stand_ins[0][1].applied
    keys = signing.bundle_public_keys(dev_public_key())
    assert signing.bundle_signature_problem(pushed, keys) is None
    assert "signature" not in bundle.document  # stored unsigned: signed with the current key when served
