"""Run the whole product locally: web, Celery worker and beat, fake model upstreams, two LiteLLM proxies
with our plugin, and a traffic generator. Ctrl-C stops every process it started.

Demo state (feature-key plaintexts, proxy tokens, proxy work dirs, logs) lives in `<VAR_DIR>/demo/`, so a
restart reuses the same keys. It is demo data only: nothing secret about it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing import budgets
from billing import services as billing_services
from billing.models import IngestBatch
from billing.synthetic import demo_mix
from controlplane.management.commands.seed_demo import DEMO_USERS
from controlplane.models import Feature
from routing import services
from routing import services as routing_services
from routing.devtools.harness import ProxyProcess, free_port
from routing.devtools.traffic import run_traffic
from routing.engine import signing
from routing.engine.scorer import default_version
from routing.models import Bundle, FeatureKey, ModelDeployment, Proxy, Rollout, RoutingPolicy, Tier
from routing.services import fleet as fleet_services

DEMO_UPSTREAM_KEY_ENV = "DEMO_UPSTREAM_KEY"  # the fake upstreams accept anything; the name is what matters
SMALL_DEPLOYMENT = "llama-3-8b"
FRONTIER_DEPLOYMENT = "gpt-4o"
PROXY_NAMES = ("demo-proxy-1", "demo-proxy-2")
# the live setup, which the seeded history is drawn from too (billing.synthetic.demo_mix)
THRESHOLD, SLM_TIMEOUT_MS, SLM_ERROR_RATE, SLM_HANG_RATE = Decimal("0.268"), 2000, 0.03, 0.02
# environment the proxies must never see: LiteLLM would try to use the control plane's database
PROXY_STRIP_ENV = ("DATABASE_URL", "DIRECT_URL", "REDIS_URL", "CELERY_BROKER_URL", "DATABASE_TEST_NAME")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no conflict
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_port(preferred: int) -> int:
    return preferred if _port_free(preferred) else free_port()


def _wait_http(url: str, process: subprocess.Popen[bytes] | None, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise CommandError(f"{what} exited with status {process.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback only
                return
        except OSError:
            time.sleep(0.3)
    raise CommandError(f"{what} did not answer {url} within {timeout_s:.0f} s")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = (
        "Migrate, seed the demo organisation, and run web + worker + beat + fake upstreams + two proxies "
        "+ traffic until Ctrl-C."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--port", type=int, default=8000, help="web port (default 8000)")
        parser.add_argument("--no-seed", action="store_true", help="skip seed_demo")
        parser.add_argument(
            "--no-proxies", action="store_true", help="control plane only: no upstreams/proxies"
        )
        parser.add_argument("--no-traffic", action="store_true", help="start the proxies but send no traffic")
        parser.add_argument("--rps", type=float, default=3.0, help="traffic: requests a second (default 3)")
        parser.add_argument(
            "--history-days",
            type=float,
            default=30,
            help="seed this many days of spend history before live traffic (default 30; 0: none)",
        )
        parser.add_argument(
            "--history-events",
            type=int,
            default=120_000,
            help="attempt rows of seeded history (default 120000, ~4000 calls a day)",
        )
        parser.add_argument(
            "--proxy-ports",
            default="4001,4002",
            help="preferred ports of the two proxies (default 4001,4002)",
        )

    # --- orchestration ----------------------------------------------------------------------------

    def handle(self, *args: Any, **options: Any) -> None:
        # Ctrl-C and `kill` both end in the cleanup below (a shell may start us with SIGINT ignored)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _interrupt)
        logging.getLogger("kombu.connection").setLevel(logging.ERROR)  # "no hostname" on the file broker
        port = options["port"]
        if not _port_free(port):
            raise CommandError(f"port {port} is in use: stop what runs there or pass --port N")
        self.state_dir = Path(settings.VAR_DIR) / "demo"
        self.log_dir = self.state_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.proxies: list[Any] = []
        self.traffic_stop = threading.Event()
        self.traffic: threading.Thread | None = None
        self.traffic_report: Any = None
        with_proxies = not options["no_proxies"]

        self._step("migrating the database")
        call_command("migrate", verbosity=0)
        self.history_start = None
        if not options["no_seed"]:
            self._step("seeding the demo organisation")
            call_command("seed_demo")
            if options["history_days"] > 0:
                self._seed_history(options["history_days"], options["history_events"])

        env = {**os.environ, "DEBUG": os.environ.get("DEBUG", "true"), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        web_url = f"http://127.0.0.1:{port}"
        try:
            upstreams: dict[str, str] = {}
            if with_proxies:
                upstreams = self._start_upstreams(env)
                self._step("creating demo deployments, routing policy, feature keys and proxies")
                setup = self._setup_fleet(upstreams, options["proxy_ports"])
                self._backdate_hosting()
            self._start_control_plane(env, port)
            self._step(f"waiting for the web server on {web_url}")
            _wait_http(f"{web_url}/healthz", self.processes["web"], "the web server")
            if with_proxies:
                self._start_proxies(setup, web_url)
                self._roll_out(setup["bundle"])
                if not options["no_traffic"]:
                    self._start_traffic(setup["keys"], options["rps"])
            self._banner(web_url, setup if with_proxies else None, options)
            self._watch()
        except KeyboardInterrupt:
            self.stdout.write("\nstopping …")
        finally:
            self._stop_all()

    def _step(self, text: str) -> None:
        self.stdout.write(f"• {text} …")
        self.stdout.flush()

    def _seed_history(self, days: float, events: int) -> None:
        """A month of company traffic under the live demo: diurnal and weekly shape (billing.synthetic),
        two small-model incidents, and one feature that has crossed its monthly budget. Seeded once:
        a restart finds the seeded batch and keeps it."""
        now = timezone.now()
        self.history_start = now - timedelta(days=days)
        if IngestBatch.objects.filter(source="seed").exists():
            self._step("spend history already seeded: keeping it")
            return
        self._step(f"seeding {days:g} days of spend history ({events:,} attempts, two incidents)")
        incidents = []
        for days_ago, hours in ((9, 3), (3, 1)):
            if days_ago < days:
                start = (now - timedelta(days=days_ago)).replace(hour=14, minute=0, second=0, microsecond=0)
                incidents.append((start, start + timedelta(hours=hours)))
        mix = demo_mix(
            threshold=float(THRESHOLD),
            slm_timeout_ms=SLM_TIMEOUT_MS,
            error_rate=SLM_ERROR_RATE,
            hang_rate=SLM_HANG_RATE,
            scorer_weights=default_version(),
            small=(SMALL_DEPLOYMENT, "openai/llama-3-8b-instruct"),
            frontier=(FRONTIER_DEPLOYMENT, "openai/gpt-4o"),
        )
        billing_services.spend_seed(events=events, days=days, end=now, incidents=incidents, mix=mix)
        feature = Feature.objects.select_related("team").filter(slug="reply-draft").first()
        if feature is None:
            return
        # the budget month is the team's (its timezone): evaluate once to read that month's spend, then set
        # the limit below it, so the feature has crossed its budget (alerts only; live traffic unaffected)
        values = {"thresholds": [50, 80, 100], "action": "alert", "is_active": True}
        budget = budgets.budget_save(
            actor=None, team=feature.team, feature=feature, amount_usd=Decimal("1000000"), **values
        )
        spent = budget.status.spend_usd
        amount = max(Decimal("0.01"), (spent * Decimal("0.9")).quantize(Decimal("0.01")))
        budgets.budget_save(actor=None, team=feature.team, feature=feature, amount_usd=amount, **values)
        self._step(f"{feature.name} has spent ${spent:.2f} of a ${amount} monthly budget (alerts only)")

    def _backdate_hosting(self) -> None:
        """The seeded history ran on the small model too: its hosting is charged from the history's start."""
        if self.history_start is not None:
            ModelDeployment.objects.filter(tier=Tier.SMALL, created_at__gt=self.history_start).update(
                created_at=self.history_start
            )

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        process = subprocess.Popen(
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: Ctrl-C here, killpg below
            cwd=str(settings.BASE_DIR),
        )
        self.processes[name] = process
        return process

    def _start_upstreams(self, env: dict[str, str]) -> dict[str, str]:
        python = sys.executable
        slm_port, frontier_port = _pick_port(9101), _pick_port(9102)
        self._step(f"starting fake SLM upstream on :{slm_port} (2 % hangs past the 2 s timeout, 3 % errors)")
        self._spawn(
            "fake-slm",
            [
                python,
                "-m",
                "routing.devtools.fake_upstream",
                "--port",
                str(slm_port),
                "--name",
                "slm",
                "--latency-ms",
                "60",
                "--hang-rate",
                str(SLM_HANG_RATE),
                "--hang-s",
                "5",
                "--error-rate",
                str(SLM_ERROR_RATE),
                "--even-faults",  # exactly those rates, as in the scenario benchmark's flaky line
                "--completion-tokens",
                "120",
            ],
            env,
        )
        if frontier_port == slm_port:
            frontier_port = _pick_port(frontier_port + 1)
        self._step(f"starting fake frontier upstream on :{frontier_port} (300 ms)")
        self._spawn(
            "fake-frontier",
            [
                python,
                "-m",
                "routing.devtools.fake_upstream",
                "--port",
                str(frontier_port),
                "--name",
                "frontier",
                "--latency-ms",
                "300",
                "--completion-tokens",
                "120",  # as long as the SLM's: the baseline prices SLM answers at their own length
            ],
            env,
        )
        urls = {"slm": f"http://127.0.0.1:{slm_port}/v1", "frontier": f"http://127.0.0.1:{frontier_port}/v1"}
        for name, url in urls.items():
            _wait_http(url.removesuffix("/v1") + "/_control", self.processes[f"fake-{name}"], f"fake {name}")
        return urls

    def _start_control_plane(self, env: dict[str, str], port: int) -> None:
        python = sys.executable
        commands = {
            "web": [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            "worker": [python, "-m", "celery", "-A", "controlplane", "worker", "--concurrency", "2"]
            + ["--loglevel", "WARNING"],
            "beat": [python, "-m", "celery", "-A", "controlplane", "beat", "--loglevel", "WARNING"]
            + ["--schedule", str(Path(settings.VAR_DIR) / "celerybeat-schedule")],
        }
        for name, command in commands.items():
            self._step(f"starting {name} (log: {self._rel(self.log_dir / f'{name}.log')})")
            self._spawn(name, command, env)

    # --- demo data ----------------------------------------------------------------------------------

    def _load_state(self) -> dict[str, Any]:
        path = self.state_dir / "state.json"
        if path.exists():
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                return {}
        return {}

    def _save_state(self, state: dict[str, Any]) -> None:
        path = self.state_dir / "state.json"
        path.write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
        path.chmod(0o600)

    def _setup_fleet(self, upstreams: dict[str, str], proxy_ports: str) -> dict[str, Any]:
        state = self._load_state()
        small = self._deployment(
            services,
            ModelDeployment,
            name=SMALL_DEPLOYMENT,
            tier="small",
            litellm_model="openai/llama-3-8b-instruct",
            api_base=upstreams["slm"],
            api_key_env=DEMO_UPSTREAM_KEY_ENV,
            context_window=8192,
            supports_logprobs=True,
            monthly_hosting_usd=Decimal("450.00"),
        )
        frontier = self._deployment(
            services,
            ModelDeployment,
            # a model litellm's bundled price map knows, so cost and savings are real prices
            name=FRONTIER_DEPLOYMENT,
            tier="frontier",
            litellm_model="openai/gpt-4o",
            api_base=upstreams["frontier"],
            api_key_env=DEMO_UPSTREAM_KEY_ENV,
            context_window=128000,
            supports_tools=True,
            supports_vision=True,
            supports_structured_output=True,
            timeout_s=Decimal("30"),
        )
        if not RoutingPolicy.objects.filter(feature__isnull=True).exists():
            services.policy_create(
                actor=None,
                feature=None,
                small_deployment=small,
                frontier_deployment=frontier,
                # on complexity-v3's scale (the default for new policies) every routine demo prompt scores
                # below 0.268 and 9 of 10 complex ones at or above it: ~73 % of the demo's 70/30 traffic goes
                # to the small model (0.26 sent one routine prompt to the frontier, 0.28 two complex ones to
                # the small model)
                threshold=THRESHOLD,
                slm_timeout_ms=SLM_TIMEOUT_MS,
            )

        keys: dict[str, str] = {}
        saved_keys = state.get("feature_keys", {})
        for feature in Feature.objects.filter(is_active=True).order_by("slug"):
            plaintext = saved_keys.get(feature.slug, "")
            known = (
                plaintext
                and FeatureKey.objects.filter(
                    feature=feature, key_hash=signing.token_hash(plaintext), revoked_at__isnull=True
                ).exists()
            )
            if not known:
                _, plaintext = services.feature_key_create(actor=None, feature=feature, name="demo traffic")
            keys[feature.slug] = plaintext
        state["feature_keys"] = keys

        ports = [int(p) for p in proxy_ports.split(",")][:2]
        ports = [_pick_port(p) for p in ports]
        if ports[0] == ports[1]:
            ports[1] = _pick_port(ports[1] + 1)
        tokens = state.get("proxy_tokens", {})
        proxies = []
        for index, (name, proxy_port) in enumerate(zip(PROXY_NAMES, ports, strict=True)):
            base_url = f"http://127.0.0.1:{proxy_port}"
            row = Proxy.objects.filter(name=name).first()
            token = tokens.get(name, "")
            if row is None:
                row, token = fleet_services.proxy_create(
                    actor=None, name=name, base_url=base_url, is_canary=index == 0
                )
            else:
                if row.base_url != base_url or not row.is_active:
                    fleet_services.proxy_update(actor=None, proxy=row, base_url=base_url, is_active=True)
                if not token or row.token_hash != signing.token_hash(signing.split_credential(token)[0]):
                    token = fleet_services.proxy_rotate_token(actor=None, proxy=row)
            tokens[name] = token
            proxies.append({"name": name, "port": proxy_port, "token": token})
        state["proxy_tokens"] = tokens
        self._save_state(state)

        try:
            bundle = services.bundle_publish(actor=None, note="demo start", rollout=False)
            self.stdout.write(f"  published bundle {bundle.version}")
        except services.BundleRejected as exc:
            raise CommandError("the demo bundle was rejected:\n  " + "\n  ".join(exc.messages)) from exc
        except ValidationError:  # nothing changed since the last demo run: serve the latest bundle
            bundle = Bundle.objects.order_by("-number").first()
            self.stdout.write(f"  bundle {bundle.version} is current")
        return {"bundle": bundle, "keys": keys, "proxies": proxies}

    def _deployment(self, services: Any, model: Any, *, name: str, **values: Any) -> Any:
        existing = model.objects.filter(name=name).first()
        if existing is None:
            return services.deployment_create(actor=None, name=name, **values)
        if existing.api_base != values["api_base"] or not existing.is_active:
            return services.deployment_update(
                actor=None, deployment=existing, api_base=values["api_base"], is_active=True
            )
        return existing

    # --- proxies, rollout, traffic ----------------------------------------------------------------------

    def _start_proxies(self, setup: dict[str, Any], web_url: str) -> None:
        class DemoProxy(ProxyProcess):
            def environment(self) -> dict[str, str]:
                env = super().environment()
                for name in PROXY_STRIP_ENV:
                    env.pop(name, None)
                env.setdefault(DEMO_UPSTREAM_KEY_ENV, "sk-demo-upstream")
                env["FINOPS_ALLOWED_KEY_ENVS"] = (
                    DEMO_UPSTREAM_KEY_ENV  # the only key variable demo bundles name
                )
                env["FINOPS_BUNDLE_PUBLIC_KEYS"] = public_key  # trust what this control plane signs
                return env

        public_key = routing_services.bundle_public_key()
        bundle = setup["bundle"]
        seed = routing_services.bundle_signed_document(bundle.document)
        for spec in setup["proxies"]:
            workdir = self.state_dir / spec["name"]
            (workdir / "config.yaml").unlink(missing_ok=True)  # always bootstrap from the current bundle
            proxy = DemoProxy(
                seed,
                workdir,
                proxy_token=spec["token"],
                control_plane_url=web_url,
                heartbeat_s=5.0,
                port=spec["port"],
            )
            self.proxies.append(proxy)
        self._step(
            f"starting {len(self.proxies)} LiteLLM proxies with the plugin on bundle {bundle.version} "
            "(takes ~10-30 s)"
        )
        errors: list[BaseException] = []

        def start(proxy: Any) -> None:
            try:
                proxy.start(timeout_s=180)
            except BaseException as exc:  # reported once every start returned
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(p,), daemon=True) for p in self.proxies]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for proxy in self.proxies:
            if proxy.process is not None:
                self.processes[f"proxy:{proxy.port}"] = proxy.process
        if errors:
            raise CommandError(f"a proxy did not start: {errors[0]}")
        for proxy in self.proxies:
            self.stdout.write(f"  proxy up on {proxy.url} in {proxy.startup_s:.1f} s")

    def _roll_out(self, bundle: Any) -> None:
        if Rollout.objects.filter(bundle=bundle, status__in=("succeeded", "partial")).exists():
            return
        try:
            services.rollout_start(actor=None, bundle=bundle, note="demo start")
            self._step(f"rolling {bundle.version} out through the worker (canary first; see /fleet/)")
        except ValidationError as exc:  # a rollout from an earlier run is still marked running
            self.stdout.write(f"  rollout not started: {exc.messages[0]}")

    def _start_traffic(self, keys: dict[str, str], rps: float) -> None:
        def run() -> None:
            # in a thread of this process (keys stay out of `ps`); it ends with the demo via the stop event
            self.traffic_report = run_traffic(
                proxies=[p.url for p in self.proxies],
                keys=list(keys.values()),
                rps=rps,
                seconds=7 * 24 * 3600,
                concurrency=16,
                stop=self.traffic_stop,
            )

        self._step(f"starting traffic: ~{rps:g} requests/s over {len(keys)} features and both proxies")
        self.traffic = threading.Thread(target=run, name="demo-traffic", daemon=True)
        self.traffic.start()

    # --- output and lifetime ------------------------------------------------------------------------------

    def _rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(settings.BASE_DIR))
        except ValueError:
            return str(path)

    def _banner(self, web_url: str, setup: dict[str, Any] | None, options: dict[str, Any]) -> None:
        out = self.stdout
        out.write(self.style.SUCCESS(f"\nFinOps control plane is up: {web_url}/"))
        out.write("  logins: " + ", ".join(f"{u} / {p}" for u, _, _, p in DEMO_USERS[:3]) + " (more above)")
        out.write(f"  dashboards: {web_url}/   fleet: {web_url}/fleet/   routing: {web_url}/routing/")
        if setup is not None:
            out.write("  proxies: " + ", ".join(p.url for p in self.proxies))
            slug, key = next(iter(setup["keys"].items()))
            body = json.dumps(
                {
                    "model": "auto",
                    "messages": [{"role": "user", "content": "Translate to French: good morning"}],
                }
            )
            out.write(f"  feature keys (demo data): {self._rel(self.state_dir / 'state.json')}")
            out.write(f"  try it ({slug}):")
            out.write(
                f"    curl -s {self.proxies[0].url}/v1/chat/completions -H 'Authorization: Bearer {key}' "
                f"-H 'Content-Type: application/json' -d {shlex.quote(body)}"
            )
            if options["no_traffic"]:
                out.write("  traffic: off (--no-traffic)")
            else:
                out.write(
                    f"  traffic: ~{options['rps']:g} req/s; spend reaches the dashboards within a minute "
                    "(SLM hangs/errors show up as fallbacks)"
                )
        out.write(f"  logs: {self._rel(self.log_dir)}/")
        out.write("Ctrl-C stops every process.\n")
        out.flush()

    def _watch(self) -> None:
        while True:
            for name, process in list(self.processes.items()):
                if process.poll() is None:
                    continue
                log = self.log_dir / f"{name}.log"
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log.exists() else ""
                raise CommandError(f"{name} exited with status {process.returncode}\n{tail}")
            time.sleep(1)

    def _stop_all(self) -> None:
        self.traffic_stop.set()
        if self.traffic is not None:
            self.traffic.join(timeout=5)  # requests still in flight are abandoned with the proxies
            if self.traffic_report is not None:
                self.stdout.write(f"traffic: {self.traffic_report.summary()}")
        # traffic first (no new requests), then proxies (their spool keeps what is unsent), then the rest
        for proxy in self.proxies:  # also the ones still starting when Ctrl-C came
            if proxy.process is not None:
                self.processes.setdefault(f"proxy:{proxy.port}", proxy.process)
        order = sorted(
            self.processes.items(),
            key=lambda item: (item[0] != "traffic", not item[0].startswith("proxy:"), item[0]),
        )
        for _, process in order:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for _, process in order:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        self.stdout.write("all demo processes stopped.")
