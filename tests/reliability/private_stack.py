"""A control plane on a private Postgres cluster (initdb + pg_ctl on a free port), for faults that take the
database down: the shared server is never touched. Used by test_postgres_restart.py and the saturation
command (routing/management/commands/saturate.py)."""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from routing.devtools.harness import REPO_ROOT, free_port


def postgres_bindir() -> Path | None:
    """The server binaries (initdb, pg_ctl); None when no Postgres server is installed here."""
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True).stdout.strip()
        if out and (Path(out) / "initdb").exists():
            return Path(out)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class PrivatePostgres:
    """Our own cluster in a temp dir; initdb refuses root, so as root it runs as the `postgres` user."""

    def __init__(self, bindir: Path, workdir: Path | None = None) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.root = Path(workdir or tempfile.mkdtemp(prefix="finops-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "postgres.log"
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError as exc:
                raise RuntimeError(
                    "running as root and there is no `postgres` user to run initdb as"
                ) from exc
            self.user = "postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=120)

    @property
    def url(self) -> str:
        return f"postgres://finops@127.0.0.1:{self.port}/finops"

    def init(self) -> PrivatePostgres:
        self.root.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(exist_ok=True)
        if self.user:
            shutil.chown(self.root, self.user)
            shutil.chown(self.sockets, self.user)
            os.chmod(self.root, 0o755)
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", "finops", "-A", "trust", "--no-sync"
        )
        self.start()
        self._psql("postgres", "-c", "CREATE DATABASE finops")
        return self

    def _psql(self, database: str, *args: str) -> subprocess.CompletedProcess[str]:
        """psql as `finops` over this cluster's socket directory."""
        return self._run(
            str(self.bindir / "psql"),
            "-h",
            str(self.sockets),
            "-p",
            str(self.port),
            "-U",
            "finops",
            "-d",
            database,
            *args,
        )

    def _options(self) -> str:
        return (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=200 -c shared_buffers=64MB"
        )

    def start(self) -> None:
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            self._options(),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self, mode: str = "fast") -> None:
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-m",
            mode,
            "-o",
            self._options(),
            "-w",
            "-t",
            "60",
            "restart",
        )

    def query(self, sql: str) -> list[tuple[str, ...]]:
        out = self._psql("finops", "-AtF", "\t", "-c", sql).stdout
        return [tuple(line.split("\t")) for line in out.splitlines() if line]

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def django_env(db_url: str, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_TEST_NAME", "DJANGO_SETTINGS_MODULE")}
    env.update(
        {
            "DATABASE_URL": db_url,
            "REDIS_URL": redis_url,
            "CELERY_BROKER_URL": redis_url,
            "DEBUG": "true",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        }
    )
    return env


def migrate(db_url: str, redis_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=str(REPO_ROOT),
        env=django_env(db_url, redis_url),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"migrate on the private cluster failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}"
        )


SETUP = r"""
import json, sys
from decimal import Decimal
from controlplane import services as cp
from routing.services import fleet as fleet_services
from routing import services
args = json.loads(sys.argv[1])
team = cp.team_create(actor=None, name="Faults", slug="faults")
features = [cp.feature_create(actor=None, team=team, name=f"Faults {i}", slug=f"faults-{i}") for i in range(3)]
small = services.deployment_create(actor=None, name="slm", tier="small", litellm_model="openai/llama-3-8b-instruct",
    api_base=args["slm"], api_key_env=args["key_env"])
frontier = services.deployment_create(actor=None, name="frontier", tier="frontier", litellm_model="openai/gpt-4o",
    api_base=args["frontier"], api_key_env=args["key_env"])
services.policy_create(actor=None, feature=None, small_deployment=small, frontier_deployment=frontier,
    threshold=Decimal("0.6"), slm_timeout_ms=args.get("slm_timeout_ms", 1000))
keys = [services.feature_key_create(actor=None, feature=f, name="load")[1] for f in features]
tokens = []
for i, port in enumerate(args["proxy_ports"]):
    _, token = fleet_services.proxy_create(actor=None, name=f"fault-{i}", base_url=f"http://127.0.0.1:{port}",
        is_canary=i == 0)
    tokens.append(token)
bundle = services.bundle_publish(actor=None, note="faults", rollout=False)
print("SETUP " + json.dumps({"keys": keys, "tokens": tokens,
    "bundle": services.bundle_signed_document(bundle.document)}))
"""


def seed(db_url: str, redis_url: str, **args: Any) -> dict[str, Any]:
    """Team, features, keys, deployments on the given upstreams, proxies, and bundle v1 (not rolled out)."""
    code = "import django; django.setup()\n" + SETUP
    env = django_env(db_url, redis_url)
    env["DJANGO_SETTINGS_MODULE"] = "controlplane.settings"
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(args)],
        cwd=str(REPO_ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    for line in result.stdout.splitlines():
        if line.startswith("SETUP "):
            return json.loads(line[len("SETUP ") :])
    raise RuntimeError(f"seeding the private cluster failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}")


def wait_ready(url: str, want: int, timeout_s: float = 30) -> int:
    """Poll /readyz until it answers `want`; returns the last status (0: no answer)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    status = 0
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=5) as response:  # noqa: S310 - loopback
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:
            status = 0
        if status == want:
            return status
        time.sleep(0.3)
    return status
