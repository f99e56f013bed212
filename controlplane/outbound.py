"""Outbound webhooks to user-given URLs: which addresses they may reach, and a POST that never follows redirects.

A webhook URL is typed by a team admin, so it is treated as hostile: it must not reach the cloud metadata
service, link-local or private addresses, or (unless `WEBHOOK_ALLOW_LOOPBACK`, for tests and DEBUG) this
machine. The host is resolved once, every address is checked, and the connection goes to the checked address
(so a DNS answer that changes between check and connect cannot redirect it). Redirects are never followed.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

METADATA_HOSTS = frozenset(
    {"metadata.google.internal", "metadata", "instance-data", "metadata.azure.internal"}
)


class OutboundRefused(ValueError):
    """A URL this server will not send to; the message names the reason and the fix."""


def _loopback_allowed() -> bool:
    return bool(settings.WEBHOOK_ALLOW_LOOPBACK)


def address_problem(address: str) -> str | None:
    """Why an IP address is not a permitted webhook target, or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return None if _loopback_allowed() else f"{ip} is a loopback address (this server itself)"
    if ip.is_link_local:
        return f"{ip} is link-local (cloud metadata service and the like)"
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return f"{ip} is not a routable unicast address"
    if ip.is_private or not ip.is_global:
        return f"{ip} is a private or internal address"
    return None


def url_problem(url: str) -> str | None:
    """Why `url` may not be a webhook target judged without DNS (scheme, literal addresses, known hosts)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "use an http:// or https:// URL"
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return "the URL has no host"
    if parts.username or parts.password:
        return "remove the user:password part; the request is signed instead"
    if host in METADATA_HOSTS:
        return f"{host} is a cloud metadata host"
    if host == "localhost" or host.endswith(".localhost"):
        return None if _loopback_allowed() else f"{host} is this server itself"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None  # a name: checked again on every send, after resolving it
    return address_problem(host)


def check_url(url: str) -> None:
    problem = url_problem(url)
    if problem:
        raise OutboundRefused(
            f"webhook URL refused: {problem}. Use a public http(s) endpoint such as Slack's."
        )


def _resolve(host: str, port: int) -> str:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise OutboundRefused(f"webhook host {host} does not resolve: {exc}") from exc
    addresses = [str(info[4][0]) for info in infos]
    for address in addresses:
        problem = address_problem(address)
        if problem:
            raise OutboundRefused(f"webhook host {host} resolves to {problem}: refused")
    return addresses[0]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class PostResult:
    status: int
    body: bytes


def post(url: str, body: bytes, *, headers: dict[str, str], timeout_s: float) -> PostResult:
    """POST to a checked address; a 3xx is an error, never followed (it could point anywhere)."""
    check_url(url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = _resolve(host, port)
    connection_class = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    connection = connection_class(host, port, address, timeout_s)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read(1024)
    finally:
        connection.close()
    if 300 <= response.status < 400:
        raise OutboundRefused(
            f"webhook answered a redirect (HTTP {response.status}); redirects are not followed: "
            "set the final URL instead"
        )
    return PostResult(response.status, answer)
