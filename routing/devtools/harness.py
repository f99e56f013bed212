"""Start the pieces of a local fleet for tests and the demo: fake upstreams, a control-plane double, proxies.

- `ControlPlaneDouble`: a tiny threaded HTTP server speaking exactly the proxy contract
  (signed spend ingest, bundle pull with ETag/304, heartbeat), which can be taken down and
  brought back on the same port.
- `ProxyProcess`: a real stock `litellm` proxy on 127.0.0.1 loading our plugin, configured by
  `routing.proxy.bootstrap` from a bundle.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from routing.engine import signing
from routing.engine.bundle import content_hash, with_content_hash
from routing.engine.spend import FieldError, parse_spend_items

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_KEY_ENVS = "FINOPS_TEST_UPSTREAM_KEY"  # what test bundles name; proxies allow only these by default
WORKER_HEALTHCHECK_S = 120  # seconds a proxy worker may take to answer uvicorn's health ping
MASTER_KEY = "sk-" + secrets.token_hex(24)  # per test run: the proxy refuses to start without one


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_json(
    method: str, url: str, body: Any = None, *, headers: dict[str, str] | None = None, timeout: float = 30.0
) -> tuple[int, Any, float]:
    """(status, parsed body, elapsed seconds) of one JSON request; never raises on HTTP errors."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback only
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        status = exc.code
    elapsed = time.perf_counter() - started
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode("utf-8", "replace")
    return status, parsed, elapsed


# ---------------------------------------------------------------------------------------------
# Control-plane double


class ControlPlaneDouble:
    """The control plane's proxy-facing endpoints, in memory."""

    def __init__(self, proxy_token: str, *, port: int | None = None) -> None:
        self.proxy_token = proxy_token
        self.port = port or free_port()
        self.lock = threading.Lock()
        self.records: dict[str, dict[str, Any]] = {}  # event_id -> record
        self.deliveries = 0  # records received including duplicates
        self.duplicates = 0
        self.batches: list[int] = []
        self.heartbeats: list[dict[str, Any]] = []
        self.bundle: dict[str, Any] | None = None
        self.max_batch_records: int | None = None  # answer 413 above this, to exercise splitting
        self.reject_next_with_400 = 0
        self.rejected: list[Any] = []  # records refused one by one (the rest of their batch was accepted)
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_bundle(self, doc: dict[str, Any]) -> None:
        with self.lock:
            self.bundle = doc

    def start(self) -> ControlPlaneDouble:
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

            def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
                payload = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def _authorized(self) -> bool:
                bearer = signing.split_credential(double.proxy_token)[0]
                return self.headers.get("Authorization") == f"Bearer {bearer}"

            def do_GET(self) -> None:
                if self.path != "/api/v1/fleet/bundle":
                    self._send(404, {"detail": "not found"})
                    return
                if not self._authorized():
                    self._send(401, {"detail": "bad proxy token"})
                    return
                with double.lock:
                    bundle = double.bundle
                if bundle is None:
                    self._send(404, {"detail": "no bundle published"})
                    return
                etag = f'"{bundle["content_hash"]}"'
                if self.headers.get("If-None-Match") == etag:
                    self._send(304, None, {"ETag": etag})
                    return
                self._send(200, bundle, {"ETag": etag})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if not self._authorized():
                    self._send(401, {"detail": "bad proxy token"})
                    return
                if self.path == "/api/v1/fleet/heartbeat":
                    with double.lock:
                        double.heartbeats.append(json.loads(raw))
                        bundle = double.bundle
                    target = (
                        {"target_version": bundle["version"], "target_hash": bundle["content_hash"]}
                        if bundle
                        else {}
                    )
                    self._send(200, target or {"target_version": None, "target_hash": None})
                    return
                if self.path != "/api/v1/ingest/spend":
                    self._send(404, {"detail": "not found"})
                    return
                timestamp = self.headers.get(signing.TIMESTAMP_HEADER, "")
                signature = self.headers.get(signing.SIGNATURE_HEADER, "")
                key = signing.ingest_key(double.proxy_token)
                if (
                    not signing.verify(key, timestamp, raw, signature)
                    or abs(time.time() - int(timestamp or 0)) > 300
                ):
                    self._send(401, {"detail": "bad signature"})
                    return
                body = json.loads(raw)
                count = len(body.get("records", [])) if isinstance(body, dict) else 0
                if double.max_batch_records is not None and count > double.max_batch_records:
                    self._send(413, {"detail": f"at most {double.max_batch_records} records"})
                    return
                parsed, errors = parse_spend_items(body)
                with double.lock:
                    if double.reject_next_with_400:
                        double.reject_next_with_400 -= 1
                        errors = errors or [FieldError("records", "rejected on purpose by the test", 0)]
                if errors:
                    self._send(400, {"errors": [e.to_json() for e in errors]})
                    return
                accepted = duplicates = 0
                items = [(i, r.event_id) for i, r in parsed.spend] + [
                    (i, c.event_id) for i, c in parsed.blocked
                ]
                with double.lock:
                    double.batches.append(len(items))
                    for index, event_id in items:
                        double.deliveries += 1
                        if event_id in double.records:
                            duplicates += 1
                        else:
                            double.records[event_id] = body["records"][index]
                            accepted += 1
                    double.duplicates += duplicates
                    double.rejected.extend(body["records"][i] for i in {e.index for e in parsed.rejected})
                self._send(
                    200,
                    {
                        "accepted": accepted,
                        "duplicates": duplicates,
                        "rejected": [e.to_rejection() for e in parsed.rejected],
                    },
                )

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, name="control-plane-double", daemon=True).start()
        return self

    def stop(self) -> None:
        """Take the control plane down: the port refuses connections until `start()`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def records_for(self, **match: Any) -> list[dict[str, Any]]:
        with self.lock:
            return [
                r
                for r in self.records.values()
                if r.get("kind", "attempt") == "attempt" and all(r.get(k) == v for k, v in match.items())
            ]

    def blocked_for(self, **match: Any) -> list[dict[str, Any]]:
        """Counter records of refused calls that arrived, matching `match`."""
        with self.lock:
            return [
                r
                for r in self.records.values()
                if r.get("kind") == "blocked" and all(r.get(k) == v for k, v in match.items())
            ]


# ---------------------------------------------------------------------------------------------
# Proxies


class ProxyProcess:
    """A stock LiteLLM proxy with the plugin, started from a bundle on a free loopback port."""

    def __init__(
        self,
        bundle: dict[str, Any],
        workdir: Path,
        *,
        proxy_token: str = "proxy-token-test",
        control_plane_url: str = "",
        heartbeat_s: float = 10.0,
        port: int | None = None,
        plugin: bool = True,
        extra_env: dict[str, str] | None = None,
        allowed_fails: int = 2,  # frontier deployments only: small ones never cool down (our breaker)
        workers: int = 1,
        custom_auth: str = "",  # stock proxies only: a dotted `custom_auth` in place of the master key alone
    ) -> None:
        self.bundle = bundle
        self.workdir = Path(workdir)
        self.proxy_token = proxy_token
        self.control_plane_url = control_plane_url
        self.heartbeat_s = heartbeat_s
        self.port = port or free_port()
        self.plugin = plugin
        self.extra_env = extra_env or {}
        self.allowed_fails = allowed_fails
        self.workers = workers
        self.custom_auth = custom_auth
        self.state_dir = self.workdir / "state"
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_s: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        from routing.proxy.bootstrap import (
            main as bootstrap,  # imports litellm (about 1 s): only when writing
        )

        self.workdir.mkdir(parents=True, exist_ok=True)
        bundle_path = self.workdir / "bundle.json"
        bundle_path.write_text(json.dumps(self.bundle), encoding="utf-8")
        config_path = self.workdir / "config.yaml"
        args = [
            "--bundle",
            str(bundle_path),
            "--out",
            str(config_path),
            "--allowed-fails",
            str(self.allowed_fails),
        ]
        if bootstrap([*args, "--state-dir", str(self.state_dir)]) != 0:
            raise RuntimeError("bootstrap failed for the test bundle")
        if not self.plugin:
            import yaml

            config = yaml.safe_load(config_path.read_text())
            config["litellm_settings"].pop("callbacks", None)
            config["general_settings"] = {"master_key": "os.environ/LITELLM_MASTER_KEY"}
            if self.custom_auth:
                config["general_settings"]["custom_auth"] = self.custom_auth
            config_path.write_text(yaml.safe_dump(config))
        return config_path

    def environment(self) -> dict[str, str]:
        # The control plane's DATABASE_URL would make LiteLLM try its own Prisma database and die.
        dropped = {
            "FINOPS_BUNDLE_FILE",
            "DATABASE_URL",
            "DATABASE_TEST_NAME",
            "DIRECT_URL",
            "REDIS_URL",
            "CELERY_BROKER_URL",
        }
        env = {k: v for k, v in os.environ.items() if k not in dropped}
        env.setdefault("FINOPS_BUNDLE_PUBLIC_KEYS", dev_public_key())
        env.setdefault("FINOPS_ALLOWED_KEY_ENVS", TEST_KEY_ENVS)
        env.update(
            {
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")])),
                "FINOPS_STATE_DIR": str(self.state_dir),
                "FINOPS_PROXY_TOKEN": self.proxy_token,
                "FINOPS_CONTROL_PLANE_URL": self.control_plane_url,
                "FINOPS_HEARTBEAT_S": str(self.heartbeat_s),
                "LITELLM_LOG": env.get("LITELLM_LOG", "ERROR"),
                "NO_DOCS": "True",
                "LITELLM_MASTER_KEY": env.get("LITELLM_MASTER_KEY") or MASTER_KEY,
                "DISABLE_ADMIN_UI": "True",
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout_s: float = 120.0) -> ProxyProcess:
        config_path = self.workdir / "config.yaml"
        if not config_path.exists():
            config_path = self.write_config()
        litellm_bin = Path(sys.executable).with_name("litellm")
        log_file = open(self.workdir / f"proxy-{self.port}.log", "ab")  # noqa: SIM115 - lives as long as the process
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [str(litellm_bin), "--config", str(config_path), "--host", "127.0.0.1", "--port", str(self.port)]
            # uvicorn kills a worker that does not answer its health ping within 5 s, and a worker still
            # importing litellm on a loaded machine takes longer: every worker then died and restarted
            + (
                [
                    "--num_workers",
                    str(self.workers),
                    "--timeout_worker_healthcheck",
                    str(WORKER_HEALTHCHECK_S),
                ]
                if self.workers > 1
                else []
            ),
            cwd=str(self.workdir),
            env=self.environment(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"proxy exited with {self.process.returncode}; see {log_file.name}:\n{self.log_tail()}"
                )
            try:
                status, _, _ = http_json("GET", self.url + "/health/liveliness", timeout=1.0)
                if status == 200:
                    self.startup_s = time.perf_counter() - started
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"proxy did not answer within {timeout_s}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        path = self.workdir / f"proxy-{self.port}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def chat(self, key: str, content: str, *, timeout: float = 30.0, **extra: Any) -> tuple[int, Any, float]:
        body = {"model": "auto", "messages": [{"role": "user", "content": content}], **extra}
        return http_json(
            "POST",
            self.url + "/chat/completions",
            body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=timeout,
        )

    def push_bundle(self, doc: dict[str, Any]) -> tuple[int, Any, float]:
        return http_json(
            "PUT",
            self.url + "/finops/v1/bundle",
            doc,
            headers={"Authorization": f"Bearer {signing.split_credential(self.proxy_token)[0]}"},
        )

    def status(self) -> dict[str, Any]:
        _, body, _ = http_json(
            "GET",
            self.url + "/finops/v1/status",
            headers={"Authorization": f"Bearer {signing.split_credential(self.proxy_token)[0]}"},
        )
        return body


def dev_public_key() -> str:
    """Public half of the published development signing key (tests and DEBUG only)."""
    return signing.bundle_public_key_b64(signing.bundle_private_key(signing.DEV_BUNDLE_SIGNING_SEED))


def dev_signed(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` signed with the development key, as a DEBUG/test control plane would serve it."""
    return signing.sign_bundle(doc, signing.bundle_private_key(signing.DEV_BUNDLE_SIGNING_SEED))


def sample_bundle(
    *,
    small_base: str,
    frontier_base: str,
    keys: dict[str, tuple[str, str]],
    threshold: float = 1.01,
    version: str = "test-1",
    **policy_overrides: Any,
) -> dict[str, Any]:
    """A minimal valid bundle over two fake upstreams; `keys` maps raw key -> (team, feature)."""
    doc: dict[str, Any] = {
        "schema": 1,
        "version": version,
        "deployments": [
            {
                "model_group": "slm",
                "model": "openai/llama-3-8b-instruct",
                "tier": "small",
                "api_base": small_base,
                "api_key": "os.environ/FINOPS_TEST_UPSTREAM_KEY",
                "context_window": 4096,
                "supports_logprobs": True,
                "input_cost_per_token": "0.0000001",
                "output_cost_per_token": "0.0000002",
            },
            {
                "model_group": "frontier",
                "model": "openai/gpt-4o",
                "tier": "frontier",
                "api_base": frontier_base,
                "api_key": "os.environ/FINOPS_TEST_UPSTREAM_KEY",
                "context_window": 128000,
            },
        ],
        "policies": {
            "default": {
                "small_model": "slm",
                "frontier_model": "frontier",
                "threshold": threshold,
                "slm_timeout_ms": 2000,
                **policy_overrides,
            }
        },
        "budgets": [],
        "experiments": [],
        "keys": [
            {
                "key_hash": signing.token_hash(raw),
                "team": team,
                "feature": feature,
                "expires_at": None,
                "revoked": False,
            }
            for raw, (team, feature) in keys.items()
        ],
        "shipping": {"batch_size": 50, "interval_ms": 200, "max_spool_records": 100000},
    }
    return dev_signed(with_content_hash(doc))


def rehash(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy with top-level `changes` applied and the content hash recomputed."""
    out = json.loads(json.dumps(doc))
    out.update(changes)
    out["content_hash"] = content_hash(out)
    return dev_signed(out)


__all__ = [
    "ControlPlaneDouble",
    "ProxyProcess",
    "dev_public_key",
    "dev_signed",
    "free_port",
    "http_json",
    "rehash",
    "sample_bundle",
]
