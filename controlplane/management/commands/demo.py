"""Run the whole product locally on embedded defaults: web, Celery worker and beat. Ctrl-C stops everything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Migrate, seed the demo organisation and run web + worker + beat until Ctrl-C."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-seed", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        port = options["port"]
        self.stdout.write("• migrating the database …")
        call_command("migrate", verbosity=0)
        if not options["no_seed"]:
            self.stdout.write("• seeding the demo organisation …")
            call_command("seed_demo")
        env = {**os.environ, "DEBUG": os.environ.get("DEBUG", "true"), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        python = sys.executable
        commands = {
            "web": [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            "worker": [
                python,
                "-m",
                "celery",
                "-A",
                "controlplane",
                "worker",
                "--concurrency",
                "2",
                "--loglevel",
                "WARNING",
            ],
            "beat": [
                python,
                "-m",
                "celery",
                "-A",
                "controlplane",
                "beat",
                "--loglevel",
                "WARNING",
                "--schedule",
                str(settings.VAR_DIR / "celerybeat-schedule"),
            ],
        }
        processes: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for name, command in commands.items():
                self.stdout.write(f"• starting {name} …")
                processes[name] = subprocess.Popen(command, env=env, start_new_session=True)
            self._wait_for_web(port, processes["web"])
            self.stdout.write(self.style.SUCCESS(f"\nFinOps control plane is up: http://127.0.0.1:{port}/"))
            self.stdout.write(
                "Log in with one of the demo users printed above. Ctrl-C stops every process.\n"
            )
            while True:
                for name, process in processes.items():
                    if process.poll() is not None:
                        raise RuntimeError(f"{name} exited with status {process.returncode}")
                time.sleep(1)
        except KeyboardInterrupt:
            self.stdout.write("\nstopping …")
        finally:
            for process in processes.values():
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGTERM)
            for process in processes.values():
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
            self.stdout.write("all demo processes stopped.")

    def _wait_for_web(self, port: int, web: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if web.poll() is not None:
                raise RuntimeError("the web server exited while starting")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("the web server did not answer /healthz within 60 s")
