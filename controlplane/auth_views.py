"""Login with a brute-force throttle: 5 failed attempts per client IP and username in 5 minutes → 429."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.contrib.auth import views as auth_views
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse

MAX_FAILURES = 5
WINDOW_S = 300
log = logging.getLogger(__name__)


def _throttle_key(request: HttpRequest) -> str:
    username = (request.POST.get("username") or "").strip().lower()
    ip = request.META.get("REMOTE_ADDR", "")
    digest = hashlib.sha256(f"{ip}|{username}".encode()).hexdigest()[:32]
    return f"login-failures:{digest}"


def _failures(request: HttpRequest) -> int:
    try:
        return int(cache.get(_throttle_key(request)) or 0)
    except Exception:  # noqa: BLE001 - see form_invalid
        log.warning("login throttle unavailable: cache error")
        return 0


class ThrottledLoginView(auth_views.LoginView):
    """Django's login view; after MAX_FAILURES failures for one IP + username, refuse for WINDOW_S seconds."""

    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if _failures(request) >= MAX_FAILURES:
            return HttpResponse(
                "Too many failed logins for this account from your address: wait 5 minutes, then try again.",
                status=429,
                content_type="text/plain; charset=utf-8",
                headers={"Retry-After": str(WINDOW_S)},
            )
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form: Any) -> HttpResponse:
        key = _throttle_key(self.request)
        try:
            if not cache.add(key, 1, WINDOW_S):
                cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, WINDOW_S)
        except Exception:  # noqa: BLE001 - a cache outage must not break logins (the throttle fails open)
            log.warning("login throttle unavailable: cache error")
        return super().form_invalid(form)

    def form_valid(self, form: Any) -> HttpResponse:
        try:
            cache.delete(_throttle_key(self.request))
        except Exception:  # noqa: BLE001 - see form_invalid
            log.warning("login throttle unavailable: cache error")
        return super().form_valid(form)
