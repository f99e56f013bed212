"""Reliability suite fixtures: a real control plane (gunicorn, subprocess) on the test database, two real
LiteLLM proxies with the plugin, fake upstreams, and a tally printed at the end of the run.

Scale: FINOPS_RELIABILITY_CLIENTS (concurrent clients, default 4) and FINOPS_RELIABILITY_SECONDS (seconds
of load per phase, default 10). Needs Postgres: on SQLite every test here is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from routing.devtools.harness import REPO_ROOT, ProxyProcess, free_port

CLIENTS = int(os.environ.get("FINOPS_RELIABILITY_CLIENTS", "4"))
SECONDS = float(os.environ.get("FINOPS_RELIABILITY_SECONDS", "10"))
UPSTREAM_KEY_ENV = "FINOPS_TEST_UPSTREAM_KEY"
PROXY_STRIP_ENV = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DATABASE_TEST_NAME")

TALLY: dict[str, int] = {
    "requests sent": 0,
    "client successes": 0,
    "recorded (calls)": 0,
    "recorded (attempt rows)": 0,
    "duplicates": 0,
    "lost": 0,
    "attempt-numbering anomalies (calls)": 0,
    "faults injected": 0,
    "five_xx": 0,  # 5xx answered to a client, or by the control plane other than its 503 outage contract
}
FAULTS: list[str] = []
HOSTILE_SUMMARY: list[str] = []  # verdict lines of test_hostile_clients.py, printed at the end of the run


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if HOSTILE_SUMMARY:
        terminalreporter.section("hostile clients")
        for line in HOSTILE_SUMMARY:
            terminalreporter.write_line(line)
    if not FAULTS and not TALLY["requests sent"]:
        return
    write = terminalreporter.write_line
    terminalreporter.section("reliability tally")
    write(f"scale: {CLIENTS} clients x {SECONDS:g} s per load phase (FINOPS_RELIABILITY_CLIENTS/SECONDS)")
    width = max(len(k) for k in TALLY)
    for name, value in TALLY.items():
        write(f"  {name:<{width}}  {value:>8}")
    for fault in FAULTS:
        write(f"  fault: {fault}")
    write(
        f"lost={TALLY['lost']} duplicates={TALLY['duplicates']} faults={TALLY['faults injected']} "
        f"five_xx={TALLY['five_xx']}"
    )


def record_fault(text: str) -> None:
    FAULTS.append(text)
    TALLY["faults injected"] += 1


def _needs_postgres() -> None:
    from django.conf import settings

    if not settings.DATABASE_IS_POSTGRES:
        pytest.skip(
            "needs Postgres: the suite checks exactly-once ingest into the partitioned Postgres tables"
        )


class ControlPlaneServer:
    """gunicorn serving the control plane on the test database; can be SIGKILLed and restarted."""

    def __init__(self, workdir: Path, db_url: str, redis_url: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.db_url = db_url
        self.redis_url = redis_url
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "control-plane.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ControlPlaneServer:
        env = {k: v for k, v in os.environ.items() if k not in PROXY_STRIP_ENV}
        env.update(
            {
                "DATABASE_URL": self.db_url,
                "REDIS_URL": self.redis_url,
                "CELERY_BROKER_URL": self.redis_url,
                "DEBUG": "true",
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "DATABASE_CONN_MAX_AGE": "0",
            }
        )
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        gunicorn = Path(sys.executable).with_name("gunicorn")
        self.process = subprocess.Popen(
            [str(gunicorn), "controlplane.wsgi:application", "--bind", f"127.0.0.1:{self.port}"]
            + ["--workers", "2", "--threads", "4", "--timeout", "60", "--access-logfile", "-"],
            cwd=str(REPO_ROOT),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"control plane exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2):  # noqa: S310
                    return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("control plane did not answer /healthz within 60 s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class PrivateRedis:
    """A redis-server of our own on a free port, so taking it down disturbs nobody else."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found")
        self.process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(0.3)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class IsolatedProxy(ProxyProcess):
    def environment(self) -> dict[str, str]:
        env = super().environment()  # the harness already keeps the control plane's database and Redis out
        env[UPSTREAM_KEY_ENV] = "sk-fake-upstream"
        return env


@pytest.fixture(scope="module")
def fleet(django_db_setup, django_db_blocker, tmp_path_factory):
    """Committed demo data on the test database, a gunicorn control plane, two proxies, two upstreams."""
    _needs_postgres()
    from django.core.management import call_command
    from django.db import connection

    from routing import services
    from routing.devtools.fake_upstream import FakeUpstream, UpstreamBehaviour
    from routing.services import fleet as fleet_services
    from tests.factories import FeatureFactory, TeamFactory

    workdir = tmp_path_factory.mktemp("reliability")
    settings_dict = connection.settings_dict
    db_url = (
        f"postgres://{settings_dict['USER'] or 'postgres'}"
        + (f":{settings_dict['PASSWORD']}" if settings_dict["PASSWORD"] else "")
        + f"@{settings_dict['HOST'] or '127.0.0.1'}:{settings_dict['PORT'] or 5432}/{settings_dict['NAME']}"
    )
    upstreams = {
        # 4 % SLM errors: some calls fall back, so calls have 1 or 2 attempt rows
        "slm": FakeUpstream(
            UpstreamBehaviour(name="slm", latency_ms=20, completion_tokens=40, error_rate=0.04)
        ).start(),
        "frontier": FakeUpstream(
            UpstreamBehaviour(name="frontier", latency_ms=60, completion_tokens=80)
        ).start(),
    }
    redis = PrivateRedis().start()
    server = ControlPlaneServer(workdir, db_url, redis.url)
    proxies: list[IsolatedProxy] = []
    with django_db_blocker.unblock():
        try:
            team = TeamFactory(name="Reliability", slug="reliability")
            features = [FeatureFactory(team=team, slug=f"rel-{i}", name=f"Reliability {i}") for i in range(3)]
            small = services.deployment_create(
                actor=None,
                name="slm",
                tier="small",
                litellm_model="openai/llama-3-8b-instruct",
                api_base=upstreams["slm"].base_url,
                api_key_env=UPSTREAM_KEY_ENV,
            )
            frontier = services.deployment_create(
                actor=None,
                name="frontier",
                tier="frontier",
                litellm_model="openai/gpt-4o",
                api_base=upstreams["frontier"].base_url,
                api_key_env=UPSTREAM_KEY_ENV,
            )
            services.policy_create(
                actor=None,
                feature=None,
                small_deployment=small,
                frontier_deployment=frontier,
                threshold=Decimal("0.6"),
                slm_timeout_ms=1000,
            )
            keys = [services.feature_key_create(actor=None, feature=f, name="load")[1] for f in features]
            tokens = []
            for i in range(2):
                port = free_port()
                _, token = fleet_services.proxy_create(
                    actor=None, name=f"rel-{i}", base_url=f"http://127.0.0.1:{port}", is_canary=i == 0
                )
                tokens.append((port, token))
            bundle = services.bundle_publish(actor=None, note="reliability", rollout=False)
            server.start()
            for i, (port, token) in enumerate(tokens):
                proxies.append(
                    IsolatedProxy(
                        services.bundle_signed_document(bundle.document),
                        workdir / f"proxy-{i}",
                        proxy_token=token,
                        control_plane_url=server.url,
                        heartbeat_s=2.0,
                        port=port,
                    )
                )
            for proxy in proxies:
                proxy.start(timeout_s=180)
            yield {
                "server": server,
                "proxies": proxies,
                "keys": keys,
                "tokens": [t for _, t in tokens],
                "upstreams": upstreams,
                "redis": redis,
                "bundle": bundle,
                "workdir": workdir,
            }
        finally:
            for proxy in proxies:
                proxy.stop()
            server.stop()
            redis.stop()
            for upstream in upstreams.values():
                upstream.stop()
            # committed rows would leak into later tests: empty every table as TransactionTestCase does
            call_command("flush", interactive=False, verbosity=0)
