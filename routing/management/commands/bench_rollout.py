"""Benchmark: start N real LiteLLM proxies with the plugin, publish a bundle, time until all run it.

    python manage.py bench_rollout --proxies 5 [--canary-window 1.0]

Runs in a throw-away test database (nothing is written to the configured one). After a warm-up
publish (the first push to a freshly started proxy pays its one-off start-up work, reported
separately), the clock starts when Publish is called (compile, validate, store, canary push and its health window, then the
rest in parallel) and stops when every proxy's own status endpoint reports the new content hash.
The last line is `converge_s=<seconds>`.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from controlplane.celery import app
from routing import services
from routing.devtools.fake_upstream import FakeUpstream, UpstreamBehaviour
from routing.devtools.harness import ProxyProcess, http_json
from routing.engine.signing import split_credential
from routing.models import Proxy
from routing.services import fleet as fleet_services


class Command(BaseCommand):
    help = "Start N real proxies, publish a bundle and print the time until all of them run it."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--proxies", type=int, default=5)
        parser.add_argument(
            "--canary-window", type=float, default=1.0, help="seconds the canary must stay healthy first"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        os.environ.setdefault("FINOPS_TEST_UPSTREAM_KEY", "sk-fake-upstream")
        count = options["proxies"]
        if count < 1:
            raise CommandError("--proxies must be at least 1")
        from django.test.utils import setup_test_environment, teardown_test_environment

        setup_test_environment()
        test_settings = connection.settings_dict.setdefault("TEST", {})
        if connection.vendor == "postgresql":
            test_settings["NAME"] = f"bench_rollout_{os.getpid()}"
        old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
        try:
            self._bench(count, options["canary_window"])
        finally:
            connection.creation.destroy_test_db(old_name, verbosity=0)
            teardown_test_environment()

    def _bench(self, count: int, canary_window: float) -> None:
        from django.conf import settings

        settings.FLEET_CANARY_WINDOW_S = canary_window
        app.conf.task_always_eager = True  # the rollout runs in this process, right after publish commits
        upstreams = {n: FakeUpstream(UpstreamBehaviour(name=n)).start() for n in ("slm", "frontier")}
        small = services.deployment_create(
            actor=None,
            name="slm",
            tier="small",
            litellm_model="openai/llama-3-8b-instruct",
            api_base=upstreams["slm"].base_url,
            api_key_env="FINOPS_TEST_UPSTREAM_KEY",
        )
        frontier = services.deployment_create(
            actor=None,
            name="frontier",
            tier="frontier",
            litellm_model="openai/gpt-4o",
            api_base=upstreams["frontier"].base_url,
            api_key_env="FINOPS_TEST_UPSTREAM_KEY",
        )
        policy = services.policy_create(
            actor=None,
            feature=None,
            small_deployment=small,
            frontier_deployment=frontier,
            threshold=Decimal("0.5"),
        )
        boot = services.bundle_publish(actor=None, note="boot", rollout=False)
        workdir = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
        proxies: list[ProxyProcess] = []
        for i in range(count):
            row, token = fleet_services.proxy_create(
                actor=None, name=f"bench-{i}", base_url="http://127.0.0.1:9", is_canary=i == 0
            )
            process = ProxyProcess(
                services.bundle_signed_document(boot.document), workdir / f"p{i}", proxy_token=token
            )
            Proxy.objects.filter(pk=row.pk).update(base_url=process.url)
            proxies.append(process)
        self.stdout.write(f"starting {count} proxies …")
        started = time.perf_counter()
        errors: list[BaseException] = []

        def start(process: ProxyProcess) -> None:
            try:
                process.start(timeout_s=180)
            except BaseException as exc:  # reported after every start returned
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(p,)) for p in proxies]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        try:
            if errors:
                raise CommandError(f"a proxy did not start: {errors[0]}")
            self.stdout.write(
                f"proxies up in {time.perf_counter() - started:.1f}s ("
                + ", ".join(f"{p.startup_s:.1f}" for p in proxies)
                + " s each)"
            )
            # warm-up: the first push after a proxy starts pays its one-off start-up work (seconds);
            # a running fleet does not, so it is timed separately and the steady state is measured
            services.policy_update(actor=None, policy=policy, threshold=Decimal("0.4"))
            t0 = time.perf_counter()
            warm = services.bundle_publish(actor=None, note="warm-up")
            self.stdout.write(
                f"warm-up rollout of {warm.version} ({warm.rollouts.get().status}) took "
                f"{time.perf_counter() - t0:.2f}s (first push to freshly started proxies)"
            )
            services.policy_update(actor=None, policy=policy, threshold=Decimal("0.35"))
            t0 = time.perf_counter()
            bundle = services.bundle_publish(actor=None, note="bench")
            published = time.perf_counter() - t0
            pending = set(range(count))
            seen: dict[int, float] = {}
            deadline = time.monotonic() + 60
            while pending and time.monotonic() < deadline:
                for i in sorted(pending):
                    _, body, _ = http_json(
                        "GET",
                        proxies[i].url + "/finops/v1/status",
                        headers={"Authorization": f"Bearer {split_credential(proxies[i].proxy_token)[0]}"},
                        timeout=5,
                    )
                    if isinstance(body, dict) and body.get("applied_hash") == bundle.content_hash:
                        seen[i] = time.perf_counter() - t0
                        pending.discard(i)
                if pending:
                    time.sleep(0.05)
            converge = time.perf_counter() - t0
            rollout = bundle.rollouts.get()
            rollout.refresh_from_db()
            self.stdout.write(f"rollout {rollout.status}; publish call returned after {published:.2f}s")
            self.stdout.write(f"canary window {canary_window:.2f}s (FLEET_CANARY_WINDOW_S)")
            for i, elapsed in sorted(seen.items()):
                self.stdout.write(f"  bench-{i}: applied {bundle.version} after {elapsed:.2f}s")
            for target in rollout.targets.select_related("proxy"):
                took = f"{target.duration_s:.2f}s" if target.duration_s is not None else "?"
                role = "canary" if target.is_canary else "rest"
                self.stdout.write(f"  push to {target.proxy.name} ({role}): {target.status} in {took}")
            if pending:
                raise CommandError(f"{len(pending)} proxies never reported {bundle.version}")
            self.stdout.write(f"converge_s={converge:.2f}")
        finally:
            for process in proxies:
                process.stop()
            for upstream in upstreams.values():
                upstream.stop()
