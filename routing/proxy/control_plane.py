"""The proxy's side of the control-plane contract: spend ingest, bundle pull, heartbeat.

Blocking stdlib HTTP, called only from the plugin's background threads, never from a request.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from routing.engine import signing

INGEST_PATH = "/api/v1/ingest/spend"
BUNDLE_PATH = "/api/v1/fleet/bundle"
HEARTBEAT_PATH = "/api/v1/fleet/heartbeat"


@dataclass(frozen=True)
class Reply:
    """A control-plane answer; status 0 means the request never got one (connection error)."""

    status: int
    body: Any
    headers: dict[str, str]
    error: str = ""


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: it would carry the proxy token (and signed spend) to another host."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_RefuseRedirects)


class ControlPlaneClient:
    def __init__(
        self, base_url: str, proxy_token: str, *, timeout_s: float = 10.0, ingest_secret: str = ""
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.proxy_token = proxy_token  # the bearer: sent with every request
        self.timeout_s = timeout_s
        # spend is signed with the ingest secret, which never travels; legacy credentials have none
        self._signing_key = signing.signing_key(ingest_secret or proxy_token)

    @property
    def configured(self) -> bool:
        return bool(self.base_url and self.proxy_token)

    def _call(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        request = urllib.request.Request(self.base_url + path, data=body, method=method)
        request.add_header("Authorization", f"Bearer {self.proxy_token}")
        if body is not None:
            request.add_header("Content-Type", "application/json; charset=utf-8")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with _OPENER.open(request, timeout=self.timeout_s) as response:  # configured URL, no redirects
                raw = response.read()
                return Reply(response.status, _json_or_text(raw), dict(response.headers.items()))
        except urllib.error.HTTPError as exc:
            raw = exc.read() if exc.fp is not None else b""
            headers = dict(exc.headers.items()) if exc.headers else {}
            if 300 <= exc.code < 400:
                return Reply(
                    exc.code, None, headers, error=f"redirect to {headers.get('Location', '?')!r} refused"
                )
            return Reply(exc.code, _json_or_text(raw), headers)
        except (OSError, ValueError) as exc:
            return Reply(0, None, {}, error=f"{type(exc).__name__}: {exc}")

    def post_spend(self, records: list[dict[str, Any]] | None = None, *, body: bytes | None = None) -> Reply:
        """Sign and send one batch; `body` lets the shipper send bytes it already built."""
        payload = body if body is not None else encode_batch(records or [])
        timestamp = str(int(time.time()))
        return self._call(
            "POST",
            INGEST_PATH,
            payload,
            {
                signing.TIMESTAMP_HEADER: timestamp,
                signing.SIGNATURE_HEADER: signing.sign(self._signing_key, timestamp, payload),
            },
        )

    def pull_bundle(self, current_hash: str | None) -> Reply:
        headers = {"If-None-Match": f'"{current_hash}"'} if current_hash else {}
        return self._call("GET", BUNDLE_PATH, None, headers)

    def heartbeat(self, payload: dict[str, Any]) -> Reply:
        return self._call("POST", HEARTBEAT_PATH, json.dumps(payload).encode("utf-8"))


def encode_batch(records: list[dict[str, Any]]) -> bytes:
    return json.dumps({"records": records}, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_batch_from_bodies(bodies: list[str]) -> bytes:
    """Join already-serialized records without parsing them again."""
    return ('{"records":[' + ",".join(bodies) + "]}").encode("utf-8")


def _json_or_text(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")[:500]
