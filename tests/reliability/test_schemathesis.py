"""Schemathesis on the live OpenAPI schema (issue 19 part 2): stateless, bounded examples, one run per role.

A real gunicorn control plane on the test database serves /api/schema/; schemathesis (CLI, pinned in the dev
extra) generates requests from it with each role's API token. Checks: no 5xx (`not_a_server_error`) and every
4xx has a body naming the problem (schemathesis_hooks.py). Celery tasks that requests queue (rollouts,
webhooks) go to a private Redis no worker reads: nothing leaves this machine.

Scale: FINOPS_SCHEMATHESIS_EXAMPLES (max examples per operation and role, default 6)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from routing.devtools.harness import REPO_ROOT
from tests.reliability.conftest import ControlPlaneServer, PrivateRedis, _needs_postgres

pytestmark = [pytest.mark.reliability, pytest.mark.django_db(transaction=False)]

EXAMPLES = int(os.environ.get("FINOPS_SCHEMATHESIS_EXAMPLES", "6"))
ROLES = ("admin", "mlops", "pm", "viewer")
SUMMARY: list[str] = []
CPYTHON_AST_BUG = "AST constructor recursion depth mismatch"


@pytest.fixture(scope="module")
def api_server(django_db_setup, django_db_blocker, tmp_path_factory):
    _needs_postgres()
    from django.core.management import call_command
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from tests.conftest import _member
    from tests.factories import FeatureFactory, TeamFactory

    workdir = tmp_path_factory.mktemp("schemathesis")
    s = connection.settings_dict
    db_url = (
        f"postgres://{s['USER'] or 'postgres'}"
        + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
        + f"@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
    )
    redis = PrivateRedis().start()
    server = ControlPlaneServer(workdir, db_url, redis.url)
    with django_db_blocker.unblock():
        try:
            team = TeamFactory(name="Schema", slug="schema")
            FeatureFactory(team=team, name="Schema chat", slug="schema-chat")
            tokens = {}
            for role in ROLES:
                user = _member(role, team if role == "pm" else None)
                tokens[role] = Token.objects.create(user=user).key
            server.start()
            yield {"server": server, "tokens": tokens, "workdir": workdir}
        finally:
            server.stop()
            redis.stop()
            call_command("flush", interactive=False, verbosity=0)


def _schemathesis() -> str:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which(
        "schemathesis"
    )
    if found is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]' pins it)")
    return found


@pytest.mark.parametrize("role", ROLES)
def test_schemathesis_finds_no_5xx_and_every_4xx_names_the_problem(api_server, role):
    binary = _schemathesis()
    server = api_server["server"]
    report = api_server["workdir"] / f"junit-{role}.xml"
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.reliability.schemathesis_hooks",
        "PYTHONPATH": str(REPO_ROOT),
    }
    command = [
        binary,
        "run",
        f"{server.url}/api/schema/",
        "--phases",
        "examples,fuzzing",
        "--max-examples",
        str(EXAMPLES),
        "--checks",
        "not_a_server_error,client_error_names_the_problem",
        "--header",
        f"Authorization: Token {api_server['tokens'][role]}",
        "--seed",
        "19",
        "--workers",  # one: with two, CPython 3.11's ast.parse in hypothesis crashed (see CPYTHON_AST_BUG)
        "1",
        "--request-timeout",
        "30",
        "--no-shrink",
        "--suppress-health-check",
        "all",
        "--warnings",
        "off",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
    ]
    # cwd: schemathesis keeps a request cache (.schemathesis/) in the working directory
    for attempt in (1, 2):
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=900, env=env, cwd=str(api_server["workdir"])
        )
        output = result.stdout + result.stderr
        # CPython 3.11's ast.parse (hypothesis describing a lambda) sometimes raises this SystemError: a bug
        # of the interpreter, not an answer of our API. Run once more, and say so.
        if result.returncode != 0 and CPYTHON_AST_BUG in output and attempt == 1:
            print(f"schemathesis role={role}: crashed on CPython's '{CPYTHON_AST_BUG}' bug, running again")
            continue
        break
    summary = [line for line in output.splitlines() if re.search(r"\b(passed|failed|errors?)\b", line)]
    cases = re.findall(r'tests="(\d+)"', report.read_text()) if report.exists() else []
    SUMMARY.append(
        f"schemathesis role={role} exit={result.returncode} {summary[-1].strip() if summary else ''}"
    )
    print(SUMMARY[-1], f"(junit tests={cases[:1]})")
    if os.environ.get("FINOPS_SCHEMATHESIS_VERBOSE"):
        print(output)
    assert result.returncode == 0, output[-6000:]
