"""Security: login throttle, CSRF on every form, production cookie flags, no secrets in logs.

`manage.py check --deploy` with production values is covered by
tests/controlplane/test_settings_and_health.py::test_check_deploy_is_clean_with_production_values.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from controlplane.auth_views import _throttle_key
from tests.factories import UserFactory

pytestmark = pytest.mark.reliability


@pytest.mark.django_db
def test_login_is_throttled_after_five_failures_per_ip_and_username(rf):
    user = UserFactory(username=f"throttle-{uuid.uuid4().hex[:8]}")
    user.set_password("the-right-password-1")
    user.save()
    probe = rf.post("/login/", {"username": user.username})
    cache.delete(_throttle_key(probe))
    client = Client()
    for _ in range(5):
        response = client.post("/login/", {"username": user.username, "password": "wrong-password"})
        assert response.status_code == 200  # the form again, with its error
    blocked = client.post("/login/", {"username": user.username, "password": "the-right-password-1"})
    assert blocked.status_code == 429
    assert "wait 5 minutes" in blocked.content.decode()
    # another username from the same address is not locked out
    other = UserFactory(username=f"other-{uuid.uuid4().hex[:8]}")
    other.set_password("the-right-password-2")
    other.save()
    cache.delete(_throttle_key(rf.post("/login/", {"username": other.username})))
    assert (
        client.post("/login/", {"username": other.username, "password": "the-right-password-2"}).status_code
        == 302
    )
    cache.delete(_throttle_key(probe))
    assert (
        client.post("/login/", {"username": user.username, "password": "the-right-password-1"}).status_code
        == 302
    )


def _sample_path(pattern: str) -> str:
    path = re.sub(r"<uuid:\w+>", str(uuid.uuid4()), pattern)
    path = re.sub(r"<int:\w+>", "1", path)
    path = re.sub(r"<(?:slug|str):\w+>", "x", path)
    path = re.sub(r"<path:\w+>", "x", path)
    return "/" + path.lstrip("^").rstrip("$")


def _page_patterns(resolver: URLResolver | None = None, prefix: str = "") -> list[str]:
    out: list[str] = []
    for entry in (resolver or get_resolver()).url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            out += _page_patterns(entry, route)
        elif isinstance(entry, URLPattern) and "(?P" not in route:
            out.append(route)
    return out


@pytest.mark.django_db
def test_csrf_is_enforced_on_every_page_form(users):
    """Every non-API URL refuses a POST without a CSRF token (403), even for a logged-in admin."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["admin"])
    # token-authenticated machine endpoints (Bearer + HMAC), not forms
    exempt_prefixes = ("/api/v1/", "/api/schema/", "/api/docs/")
    checked = []
    for pattern in _page_patterns():
        path = _sample_path(pattern)
        if path.startswith(exempt_prefixes) or path in ("/healthz", "/readyz"):
            continue
        response = client.post(path, {"name": "x"})
        assert response.status_code == 403, (
            f"POST {path} without a CSRF token answered {response.status_code}"
        )
        checked.append(path)
    assert "/login/" in checked and len(checked) > 10


def test_production_cookie_and_transport_flags():
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
        "SECRET_KEY": "x" * 60,
        "FINOPS_BUNDLE_SIGNING_KEY": "i13fCfuyn7arXbnFL75s9MoaLf/Jny1AsPBffud6Mas=",  # throwaway test key
        "ALLOWED_HOSTS": "finops.example.com",
        "DATABASE_URL": "sqlite:///:memory:",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; print(json.dumps({"
        "k: getattr(s, k) for k in ('DEBUG', 'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', "
        "'SESSION_COOKIE_HTTPONLY', 'SECURE_SSL_REDIRECT', 'SECURE_HSTS_SECONDS', 'X_FRAME_OPTIONS')}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    flags = json.loads(result.stdout.strip().splitlines()[-1])
    assert flags == {
        "DEBUG": False,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "X_FRAME_OPTIONS": "DENY",
    }
