"""Host side of docker/smoke.sh: HTTP calls to the ports the stack publishes on 127.0.0.1 (stdlib only).

    python3 docker/smoke_client.py COMMAND [args]   (environment: WEB, API_TOKEN, ...; see smoke.sh)

Requests to the web service carry `X-Forwarded-Proto: https`, as the TLS front a deployment puts before it
would: the stack runs with its production security settings (https redirect, secure cookies)."""

from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.error
import urllib.request

WEB = os.environ.get("WEB", "")


def call(method: str, url: str, body: object = None, headers: dict | None = None, timeout: float = 30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("X-Forwarded-Proto", "https")
    req.add_header("Host", "localhost")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def api(method: str, path: str, body: object = None) -> object:
    status, text = call(method, WEB + path, body, {"Authorization": f"Token {os.environ['API_TOKEN']}"})
    if status >= 300:
        sys.exit(f"smoke: {method} {path} answered {status}: {text[:500]}")
    return json.loads(text) if text else None


def fail(message: str) -> None:
    sys.exit(f"smoke: {message}")


def probes() -> None:
    for path in ("/healthz", "/readyz"):
        status, text = call("GET", WEB + path)
        if status != 200:
            fail(f"{path} answered {status}: {text[:300]}")
    status, page = call("GET", WEB + "/login/")
    if status != 200 or "<form" not in page:
        fail(f"/login/ answered {status}: {page[:300]}")
    css = re.findall(r'href="(/static/[^"]+\.css)"', page)
    if not css:
        fail("the login page links no stylesheet")
    for href in css:
        if not re.search(r"\.[0-9a-f]{12}\.css$", href):
            fail(f"{href} is not a hashed (collectstatic manifest) name")
        status, text = call("GET", WEB + href)
        if status != 200 or len(text) < 100:
            fail(f"{href} answered {status} with {len(text)} bytes")
    print(f"smoke: /healthz /readyz 200, /login/ renders with {len(css)} stylesheet(s) {css[0]}")


def register() -> None:
    tokens = {}
    for index, name in enumerate(("proxy-a", "proxy-b")):
        row = api(
            "POST",
            "/api/v1/fleet/proxies/",
            {"name": name, "base_url": f"http://{name}:4000", "is_canary": index == 0},
        )
        tokens[name] = row["token"]
    print(f"PROXY_A_TOKEN={tokens['proxy-a']}")
    print(f"PROXY_B_TOKEN={tokens['proxy-b']}")


def new_key() -> None:
    """A key only the next bundle carries: a chat with it proves that bundle reached the proxy."""
    row = api("POST", "/api/v1/routing/keys/", {"feature": "smoke-chat", "name": "smoke"})
    print(row["key"])


def publish(note: str) -> None:
    row = api("POST", "/api/v1/fleet/bundles/publish/", {"note": note})
    print(row["version"])


def wait_applied(version: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = api("GET", "/api/v1/fleet/proxies/")
        rows = rows["results"] if isinstance(rows, dict) else rows
        applied = {r["name"]: r["applied_version"] for r in rows}
        if applied and all(v == version for v in applied.values()):
            print(f"smoke: bundle {version} applied on {', '.join(sorted(applied))}")
            return
        if time.monotonic() > deadline:
            fail(f"bundle {version} not applied everywhere after {timeout_s:.0f} s: {applied}")
        time.sleep(2)


def chat(port: str, key: str) -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": "smoke test: say hi"}]}
    status, text = call(
        "POST",
        f"http://127.0.0.1:{port}/chat/completions",
        body,
        {"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    if status != 200:
        fail(f"chat through the proxy answered {status}: {text[:300]}")
    print("smoke: chat through the proxy answered 200 from " + json.loads(text).get("model", "?"))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "probes":
        probes()
    elif command == "register":
        register()
    elif command == "new-key":
        new_key()
    elif command == "publish":
        publish(args[0])
    elif command == "wait-applied":
        wait_applied(args[0])
    elif command == "chat":
        chat(args[0], args[1])
    else:
        fail(f"unknown command {command}")
