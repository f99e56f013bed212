"""Production settings, health endpoints (including a down database), and `check --deploy`."""

import json
import os
import subprocess
import sys

import pytest

PROD_ENV = {
    "PATH": os.environ.get("PATH", ""),
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "DJANGO_SETTINGS_MODULE": "controlplane.settings",
    "ALLOWED_HOSTS": "finops.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://finops.example.com",
    "FINOPS_BUNDLE_SIGNING_KEY": "i13fCfuyn7arXbnFL75s9MoaLf/Jny1AsPBffud6Mas=",  # throwaway test key
}


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_production_refuses_to_start_without_secret_key(tmp_path):
    result = _run("import django; django.setup()", {**PROD_ENV, "FINOPS_VAR_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_check_deploy_is_clean_with_production_values(tmp_path):
    env = {
        **PROD_ENV,
        "FINOPS_VAR_DIR": str(tmp_path),
        "SECRET_KEY": "k" * 20 + "-Zq8#pL2@vW9!xR4$tY7^mN1&" * 2,
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_secret_key_file_is_read(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-file-" + "s" * 50)
    code = "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)"
    result = _run(code, {**PROD_ENV, "FINOPS_VAR_DIR": str(tmp_path), "SECRET_KEY_FILE": str(secret)})
    assert result.stdout.strip() == "from-file-" + "s" * 50


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_when_everything_is_up(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_readyz_is_503_when_the_database_is_down(tmp_path):
    code = (
        "import django, json; django.setup();"
        "from django.test import Client;"
        "r = Client(HTTP_HOST=\"finops.example.com\").get('/readyz'); print(r.status_code); print(json.dumps(r.json()))"
    )
    env = {
        **PROD_ENV,
        "DEBUG": "true",
        "FINOPS_VAR_DIR": str(tmp_path),
        "DATABASE_URL": "postgres://postgres@127.0.0.1:1/nothing?connect_timeout=2",
    }
    result = _run(code, env)
    status, body = result.stdout.strip().splitlines()[-2:]
    assert status == "503", result.stderr[-2000:]
    assert json.loads(body)["checks"]["database"].startswith("error")


def test_readyz_is_503_when_the_broker_is_down(tmp_path):
    code = (
        "import django, json; django.setup();"
        "from django.test import Client;"
        "r = Client(HTTP_HOST=\"finops.example.com\").get('/readyz'); print(r.status_code); print(json.dumps(r.json()))"
    )
    env = {
        **PROD_ENV,
        "DEBUG": "true",
        "FINOPS_VAR_DIR": str(tmp_path),
        "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
    }
    result = _run(code, env)
    status, body = result.stdout.strip().splitlines()[-2:]
    assert status == "503", result.stderr[-2000:]
    assert json.loads(body)["checks"]["broker"].startswith("error")
