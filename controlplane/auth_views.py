"""Login with a brute-force throttle, for `/login/` and `/admin/login/` alike.

Five failed attempts for one username from one client address in 5 minutes, or 50 failures from one
client address, answer 429 until the window ends. The client address is REMOTE_ADDR unless that is a
reverse proxy named in `TRUSTED_PROXIES`: then it is the right-most X-Forwarded-For entry that is not
one of ours (entries further left are whatever the client wrote, so they are never believed).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse

MAX_FAILURES = 5  # per client address and username
MAX_ADDRESS_FAILURES = 50  # per client address, any username (credential stuffing)
WINDOW_S = 300
log = logging.getLogger(__name__)


def _networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(n.strip(), strict=False) for n in settings.TRUSTED_PROXIES if n.strip()]


def _is_trusted(address: str, networks: list[Any]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(request: HttpRequest) -> str:
    """The address of the client as our own reverse proxies saw it (see the module docstring)."""
    remote = request.META.get("REMOTE_ADDR", "")
    networks = _networks()
    if not networks or not _is_trusted(remote, networks):
        return remote
    forwarded = [
        part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()
    ]
    for hop in reversed(forwarded):
        if not _is_trusted(hop, networks):
            return hop
    return forwarded[0] if forwarded else remote


def _keys(request: HttpRequest) -> tuple[str, str]:
    username = (request.POST.get("username") or "").strip().lower()
    address = client_address(request)
    pair = hashlib.sha256(f"{address}|{username}".encode()).hexdigest()[:32]
    only_address = hashlib.sha256(address.encode()).hexdigest()[:32]
    return f"login-failures:{pair}", f"login-failures-address:{only_address}"


def _throttle_key(request: HttpRequest) -> str:
    """The per client address and username counter's cache key."""
    return _keys(request)[0]


def _throttled(request: HttpRequest) -> bool:
    pair, address = _keys(request)
    try:
        counts = cache.get_many([pair, address])
    except Exception:  # noqa: BLE001 - a cache outage must not break logins (the throttle fails open)
        log.warning("login throttle unavailable: cache error")
        return False
    return int(counts.get(pair) or 0) >= MAX_FAILURES or int(counts.get(address) or 0) >= MAX_ADDRESS_FAILURES


def _count_failure(request: HttpRequest) -> None:
    for key in _keys(request):
        try:
            if not cache.add(key, 1, WINDOW_S):
                cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, WINDOW_S)
        except Exception:  # noqa: BLE001 - see _throttled
            log.warning("login throttle unavailable: cache error")


def _forget_failures(request: HttpRequest) -> None:
    try:
        cache.delete(_keys(request)[0])
    except Exception:  # noqa: BLE001 - see _throttled
        log.warning("login throttle unavailable: cache error")


def _too_many() -> HttpResponse:
    return HttpResponse(
        "Too many failed logins for this account from your address: wait 5 minutes, then try again.",
        status=429,
        content_type="text/plain; charset=utf-8",
        headers={"Retry-After": str(WINDOW_S)},
    )


class ThrottledLoginView(auth_views.LoginView):
    """Django's login view behind the throttle."""

    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if _throttled(request):
            return _too_many()
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form: Any) -> HttpResponse:
        _count_failure(self.request)
        return super().form_invalid(form)

    def form_valid(self, form: Any) -> HttpResponse:
        _forget_failures(self.request)
        return super().form_valid(form)


def throttled_login(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap a login view we do not own (the admin's): a POST that does not end logged in is a failure."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method != "POST":
            return view(request, *args, **kwargs)
        if _throttled(request):
            return _too_many()
        response = view(request, *args, **kwargs)
        if response.status_code in (301, 302, 303) and request.user.is_authenticated:
            _forget_failures(request)
        else:
            _count_failure(request)
        return response

    return wrapper
