"""The plugin's process-wide state: the applied bundle, the spool and shipper, the heartbeat.

One `ProxyRuntime` per proxy process. The applied bundle is a single reference swapped under a
lock after the new one is validated and persisted, so a request that already read it keeps a
consistent view and the next one sees the new version.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import tempfile
import threading
import time
from collections import OrderedDict, deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from routing.engine import signing
from routing.engine.bundle import Bundle, validate_bundle
from routing.engine.decision import ScoredFn, ScoreFn, ShareThreshold, length_score
from routing.proxy import abandon
from routing.proxy.blocked import BlockedCalls
from routing.proxy.breaker import BreakerBoard, combine_reports
from routing.proxy.control_plane import ControlPlaneClient
from routing.proxy.looplag import LoopLag
from routing.proxy.settings import ProxySettings
from routing.proxy.shipper import PUBLISH_EVERY_S, SpendShipper
from routing.proxy.spool import SPOOL_FILE, SpendSpool
from routing.proxy.topology import model_list_for

log = logging.getLogger("finops.runtime")

BUNDLE_FILE = "bundle.json"  # last-known-good bundle in FINOPS_STATE_DIR
MAX_ERRORS = 20
WORKER_STALE_S = 5.0  # a worker not heard from for this long is left out of the proxy's status
ABANDONED_KEPT = 4096  # call ids of recently abandoned SLM attempts, to mark their records


class ProxyRuntime:
    def __init__(self, settings: ProxySettings) -> None:
        self.settings = settings
        self.bundle: Bundle | None = None
        self.shares: dict[str, ShareThreshold] = {}
        self.open_signals = abandon.OpenSignals()
        # this worker process's view of each small model's health; an opening wakes its in-flight attempts
        self.loop_lag = LoopLag()  # the proxy's own stalls, which the breaker does not blame on the SLM
        self.breakers = BreakerBoard(on_open=self.open_signals.fire, stalled=self.loop_lag.stalled_during)
        self._abandoned: OrderedDict[str, None] = OrderedDict()
        self._abandoned_lock = threading.Lock()
        self._abandoning_installed = False
        self.errors: deque[str] = deque(maxlen=MAX_ERRORS)
        self.restart_required = False
        self.router_topology: str | None = None  # topology hash LiteLLM's router was last brought to
        self.client = ControlPlaneClient(
            settings.control_plane_url,
            settings.proxy_token,
            timeout_s=settings.ship_timeout_s,
            ingest_secret=settings.ingest_secret,
        )
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.spool = SpendSpool(settings.state_dir / SPOOL_FILE)
        self.blocked = BlockedCalls()  # refused calls, tallied per feature and shipped as counter records
        self.shipper = SpendShipper(
            self.spool, self.client, drain=self.blocked.drain, publish=self.publish_worker_state
        )
        self._apply_lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat_thread: threading.Thread | None = None
        self._score_fn: ScoreFn | None = None
        self._scored_fn: ScoredFn | None = None
        self._score_version: str | None = None
        self.last_heartbeat_at: datetime | None = None
        self.target_hash: str | None = None
        self._unassigned_said: str | None = None

    # -- scoring -------------------------------------------------------------------------------
    def score_fn(self) -> ScoreFn:
        # The applied bundle names the scorer weights its thresholds are for; None: the shipped default.
        version = self.bundle.scorer_weights if self.bundle is not None else None
        if self._score_fn is None or self._score_version != version:
            try:
                from routing.engine import (
                    ComplexityScorer,  # lazy: the scorer is optional for routing to work
                )

                scorer = ComplexityScorer.for_version(version)
                scorer.score([{"role": "user", "content": "warm up"}])
                self._score_fn = lambda messages, tools: scorer.score(messages, tools=tools)
                self._scored_fn = scorer.score_with_signals
            except Exception as exc:  # fall back so routing never stops on a scorer problem
                self.note_error(
                    f"complexity scorer unavailable, using length score: {type(exc).__name__}: {exc}"
                )
                self._score_fn = length_score
                self._scored_fn = None
            self._score_version = version
        return self._score_fn

    def scored_fn(self) -> ScoredFn | None:
        """The scorer that applies a feature's adjustment and returns the signals to record (None: length score)."""
        self.score_fn()
        return self._scored_fn

    # -- abandoned SLM attempts ----------------------------------------------------------------
    def install_abandoning(self) -> None:
        """Let an opening breaker cut off the SLM attempts in flight (see `routing.proxy.abandon`)."""
        if self._abandoning_installed:
            return
        self._abandoning_installed = True
        problem = abandon.install(
            opened_since=lambda attempt: self.breakers.breaker(attempt.group).opened_since(
                attempt.generation
            ),
            signals=self.open_signals,
            on_abandon=self._note_abandoned,
        )
        if problem:
            self.note_error(problem)

    def _note_abandoned(self, attempt: abandon.SlmAttempt) -> None:
        self.breakers.breaker(attempt.group).count_abandoned()
        with self._abandoned_lock:
            self._abandoned[attempt.call_id] = None
            while len(self._abandoned) > ABANDONED_KEPT:
                self._abandoned.popitem(last=False)

    def was_abandoned(self, call_id: str) -> bool:
        return call_id in self._abandoned

    def note_error(self, message: str) -> None:
        stamped = f"{datetime.now(UTC).isoformat(timespec='seconds')} {message}"
        if not self.errors or not self.errors[-1].endswith(message):
            self.errors.append(stamped)
        log.warning("finops: %s", message)

    # -- bundles -------------------------------------------------------------------------------
    def apply_bundle(self, doc: Any, *, source: str) -> list[str]:
        """Verify its signature, validate, persist, then swap in; return the errors (empty when applied)."""
        errors = self._trust_errors(doc) or validate_bundle(doc)
        if errors:
            self.note_error(
                f"rejected bundle from {source}: {errors[0]}"
                + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else "")
            )
            return errors
        bundle = Bundle.from_json(doc)
        with self._apply_lock:
            if self.bundle is not None and self.bundle.content_hash == bundle.content_hash:
                return []
            self._persist(doc)
            self._configure_for(bundle)
            self.bundle = bundle
        log.info("finops: applied bundle %s (%s) from %s", bundle.version, bundle.content_hash[:12], source)
        return []

    def _trust_errors(self, doc: Any) -> list[str]:
        """A bundle is applied only when the control plane signed it and it names only allowed key variables."""
        try:
            keys = signing.bundle_public_keys(self.settings.bundle_public_keys)
        except ValueError as exc:
            return [str(exc)]
        problem = signing.bundle_signature_problem(doc, keys)
        if problem:
            return [problem]
        return key_env_errors(doc, self.settings.allowed_key_envs)

    def _persist(self, doc: dict[str, Any]) -> None:
        target = self.settings.state_dir / BUNDLE_FILE
        fd, tmp = tempfile.mkstemp(prefix=".bundle-", dir=str(self.settings.state_dir))
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(doc, handle, separators=(",", ":"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)  # atomic: a crash leaves the old or the new bundle, never half of one

    def _configure_for(self, bundle: Bundle) -> None:
        shipping = bundle.shipping
        self.spool.max_records = shipping.max_spool_records
        self.spool.full_policy = shipping.spool_full_policy
        self.shipper.batch_size = shipping.batch_size
        self.shipper.interval_s = shipping.interval_ms / 1000.0
        self.breakers.configure(bundle.breaker)

    def sync_router(self, bundle: Bundle, router: Any) -> None:
        """Bring LiteLLM's router to the bundle's deployments; call only on the event loop.

        `Router.set_model_list` is synchronous, so no other request runs while it rebuilds.
        On the first call the router is compared to the bundle first, so a config built from
        the same bundle is left alone.
        """
        target = bundle.topology_hash()
        try:
            if self.router_topology is None and _router_fingerprint(router.model_list) == _bundle_fingerprint(
                bundle
            ):
                self.router_topology = target
                return
            router.set_model_list(model_list_for(bundle))
            self.router_topology = target
            self.restart_required = False
            log.info("finops: router now serves the deployments of bundle %s", bundle.version)
        except Exception as exc:  # keep serving the old topology; the heartbeat asks for a restart
            self.router_topology = target  # do not retry on every request
            self.restart_required = True
            self.note_error(
                f"could not apply the model topology live ({type(exc).__name__}: {exc}): restart the proxy"
            )

    def load_last_known_good(self) -> None:
        for path, source in (
            (self.settings.state_dir / BUNDLE_FILE, "last-known-good"),
            (self.settings.bundle_file, "FINOPS_BUNDLE_FILE"),
        ):
            if path is None or not Path(path).exists():
                continue
            try:
                with open(path, encoding="utf-8") as handle:
                    doc = json.load(handle)
            except (OSError, ValueError) as exc:
                self.note_error(f"cannot read {source} bundle {path}: {exc}")
                continue
            if not self.apply_bundle(doc, source=source):
                return

    def pull_bundle(self) -> bool:
        """Fetch the control plane's current bundle; True when one was applied."""
        if not self.client.configured:
            return False
        current = self.bundle.content_hash if self.bundle else None
        reply = self.client.pull_bundle(current)
        if reply.status == 304:
            return False
        if reply.status == 404 and _no_bundle_assigned(reply.body):
            serving = (
                f"serving last-known-good bundle {self.bundle.version}"
                if self.bundle is not None
                else "waiting for one (calls get 503 until then)"
            )
            if self._unassigned_said != serving:  # once per state, not on every heartbeat
                self._unassigned_said = serving
                log.info("finops: the control plane has no bundle assigned to this proxy yet; %s", serving)
            return False
        self._unassigned_said = None
        if reply.status != 200:
            self.note_error(f"bundle pull failed: HTTP {reply.status} {reply.error}".strip())
            return False
        errors = self.apply_bundle(reply.body, source="pull")
        return not errors

    # -- heartbeat -----------------------------------------------------------------------------
    def worker_state(self) -> dict[str, Any]:
        """What this worker process alone knows: its breakers, errors and shipping."""
        errors = list(self.errors)
        if self.shipper.last_error:
            errors.append(self.shipper.last_error)
        last_ship = self.shipper.last_ship_at
        return {
            "pid": os.getpid(),
            "breakers": self.breakers.report(),
            "errors": errors,
            "last_ship_at": last_ship.isoformat() if last_ship else None,
            "shipping": self.shipper.is_shipping,
            "records": self.shipper.enqueued,
            "blocked_calls": self.blocked.total,
            "restart_required": self.restart_required,
            "applied_hash": self.bundle.content_hash if self.bundle else None,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def publish_worker_state(self) -> None:
        """Put this worker's state in the shared spool file, where any worker's status finds it."""
        self.spool.put_worker_report(self.shipper.holder, json.dumps(self.worker_state(), default=str))

    def _worker_states(self) -> list[dict[str, Any]]:
        """Every live worker of this proxy (all open the same spool file); this one's state is current."""
        mine = self.worker_state()
        states = [mine]
        max_age = max(WORKER_STALE_S, 3 * PUBLISH_EVERY_S)
        for holder, raw in self.spool.worker_reports(max_age).items():
            if holder == self.shipper.holder:
                continue
            try:
                state = json.loads(raw)
            except ValueError:
                continue
            if isinstance(state, dict):
                states.append(state)
        return sorted(states, key=lambda state: int(state.get("pid") or 0))

    def status(self) -> dict[str, Any]:
        """The proxy's status over all its workers (heartbeat body and `GET /finops/v1/status`)."""
        bundle = self.bundle
        workers = self._worker_states()
        errors: list[str] = []
        for state in workers:
            for error in state.get("errors") or []:
                if error not in errors:
                    errors.append(error)
        dropped = self.spool.dropped()
        if dropped:
            errors.append(f"spool full: {dropped} spend records dropped ({self.spool.full_policy})")
        shipped = [str(state["last_ship_at"]) for state in workers if state.get("last_ship_at")]
        return {
            "applied_version": bundle.version if bundle else None,
            "applied_hash": bundle.content_hash if bundle else None,
            "spool_depth": self.spool.depth(),
            "dead_letters": self.spool.dead_letter_count(),
            "blocked_calls": sum(int(state.get("blocked_calls") or 0) for state in workers),
            "last_ship_at": max(shipped) if shipped else None,
            "errors": errors[-MAX_ERRORS:],
            "restart_required": any(bool(state.get("restart_required")) for state in workers),
            "plugin_version": self.settings.plugin_version,
            "breakers": combine_reports(
                [(int(state.get("pid") or 0), state.get("breakers") or []) for state in workers]
            ),
            "workers": [
                {k: state.get(k) for k in ("pid", "shipping", "records", "applied_hash", "at")}
                for state in workers
            ],
            "pid": os.getpid(),
        }

    def heartbeat_once(self) -> None:
        if not self.client.configured:
            return
        reply = self.client.heartbeat(self.status())
        if reply.status != 200:
            self.note_error(f"heartbeat failed: HTTP {reply.status} {reply.error}".strip())
            return
        self.last_heartbeat_at = datetime.now(UTC)
        body = reply.body if isinstance(reply.body, dict) else {}
        self.target_hash = body.get("target_hash")
        applied = self.bundle.content_hash if self.bundle else None
        if self.target_hash and self.target_hash != applied:
            self.pull_bundle()
        if self.spool.depth():
            self.shipper.ship_soon()  # the control plane is answering again: retry now, not after backoff

    def _heartbeat_loop(self) -> None:
        try:
            self.pull_bundle()
        except Exception as exc:
            self.note_error(f"initial bundle pull crashed: {type(exc).__name__}: {exc}")
        while not self._stop.wait(self.settings.heartbeat_s):
            try:
                self.heartbeat_once()
            except Exception as exc:  # keep beating whatever one beat did
                self.note_error(f"heartbeat crashed: {type(exc).__name__}: {exc}")

    def start(self) -> None:
        self.load_last_known_good()
        if self.bundle is None:
            self.note_error("no bundle yet: serving 503 until the control plane delivers one")
        self.shipper.start()
        if self._heartbeat_thread is None:
            self._heartbeat_thread = threading.Thread(
                target=self._heartbeat_loop, name="finops-heartbeat", daemon=True
            )
            self._heartbeat_thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.shipper.stop()

    def wait_for_bundle(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.bundle is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.bundle is not None


def key_env_errors(doc: Any, allowed: frozenset[str]) -> list[str]:
    """Every `os.environ/NAME` a deployment names that is not in FINOPS_ALLOWED_KEY_ENVS.

    Whoever edits a deployment chooses where LiteLLM sends the variable it names: without this list a
    bundle could send LITELLM_MASTER_KEY or the proxy token to any server as a Bearer header."""
    errors: list[str] = []
    deployments = doc.get("deployments") if isinstance(doc, dict) else None
    for i, deployment in enumerate(deployments if isinstance(deployments, list) else []):
        if not isinstance(deployment, dict):
            continue
        for field_name in ("api_key", "api_base"):
            value = deployment.get(field_name)
            if isinstance(value, str) and value.startswith("os.environ/"):
                name = value.removeprefix("os.environ/")
                if name not in allowed:
                    errors.append(
                        f"$.deployments[{i}].{field_name}: names environment variable {name!r}, which this "
                        "proxy does not allow (add it to FINOPS_ALLOWED_KEY_ENVS in the proxy's environment "
                        "if it really holds a provider key)"
                    )
    return errors


def _no_bundle_assigned(body: Any) -> bool:
    """The control plane's 404 for a pool without a published bundle (not a wrong URL)."""
    detail = body.get("detail") if isinstance(body, dict) else ""
    return isinstance(detail, str) and "no bundle" in detail


def _resolve(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("os.environ/"):
        return os.environ.get(value.removeprefix("os.environ/"), "")
    return value


def _router_fingerprint(model_list: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return sorted(
        (
            str(entry.get("model_name")),
            str((entry.get("litellm_params") or {}).get("model")),
            str((entry.get("litellm_params") or {}).get("api_base") or ""),
        )
        for entry in model_list or []
    )


def _bundle_fingerprint(bundle: Bundle) -> list[tuple[str, str, str]]:
    return sorted((d.model_group, d.model, str(_resolve(d.api_base) or "")) for d in bundle.deployments)


_runtime: ProxyRuntime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> ProxyRuntime:
    """The process's runtime, started on first use from the environment."""
    global _runtime
    if _runtime is None:
        with _runtime_lock:
            if _runtime is None:
                runtime = ProxyRuntime(ProxySettings.from_env())
                runtime.start()
                atexit.register(runtime.stop)  # a worker shutting down writes its queue to the spool first
                _runtime = runtime
    return _runtime
