"""Issue 14 items 6 and 7 against a real LiteLLM proxy with the plugin.

6: a deployment edit cannot make the proxy send LITELLM_MASTER_KEY (or any variable the proxy's own
   FINOPS_ALLOWED_KEY_ENVS does not list) to a server of the editor's choosing.
7: only bundles signed by the control plane's Ed25519 key are applied (push, pull, last-known-good file);
   the proxy's control-plane client and the control plane's pusher never follow redirects with credentials.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from routing.devtools.fake_upstream import FakeUpstream, UpstreamBehaviour
from routing.devtools.harness import MASTER_KEY, ControlPlaneDouble, ProxyProcess, dev_signed, sample_bundle
from routing.engine import signing
from routing.engine.bundle import content_hash, with_content_hash
from routing.proxy.control_plane import ControlPlaneClient
from routing.proxy.settings import check_control_plane_url

pytestmark = pytest.mark.proxy

TOKEN = "proxy-token-security"
KEY = "fk-security"


class CaptureServer:
    """An 'attacker' server: records the Authorization header of every request, answers like a model."""

    def __init__(self) -> None:
        self.authorizations: list[str] = []
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                outer.authorizations.append(self.headers.get("Authorization", ""))
                outer.paths.append(self.path)
                body = json.dumps(
                    {
                        "id": "chatcmpl-capture",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": "gpt-4o",
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": "captured"},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = _answer
            do_GET = _answer
            do_PUT = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Redirector:
    """Answers everything with a 307 to `target`: a credential-carrying client must not follow it."""

    def __init__(self, target: str) -> None:
        outer = self
        self.hits = 0

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def _redirect(self) -> None:
                outer.hits += 1
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self.send_response(307)
                self.send_header("Location", target + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = _redirect
            do_POST = _redirect
            do_PUT = _redirect

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Setup:
    def __init__(
        self,
        upstreams: dict[str, FakeUpstream],
        capture: CaptureServer,
        double: ControlPlaneDouble,
        proxy: ProxyProcess,
        boot: dict[str, Any],
    ):
        self.upstreams, self.capture, self.double, self.proxy, self.boot = (
            upstreams,
            capture,
            double,
            proxy,
            boot,
        )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    upstreams = {name: FakeUpstream(UpstreamBehaviour(name=name)).start() for name in ("slm", "frontier")}
    capture = CaptureServer()
    boot = sample_bundle(
        small_base=upstreams["slm"].base_url,
        frontier_base=upstreams["frontier"].base_url,
        keys={KEY: ("team-a", "security")},
        threshold=0.0,  # everything goes to the frontier group
    )
    double = ControlPlaneDouble(TOKEN).start()
    double.set_bundle(boot)
    proxy = ProxyProcess(
        boot,
        tmp_path_factory.mktemp("security-proxy"),
        proxy_token=TOKEN,
        control_plane_url=double.url,
        heartbeat_s=0.5,
    )
    proxy.start()
    try:
        yield Setup(upstreams, capture, double, proxy, boot)
    finally:
        proxy.stop()
        double.stop()
        capture.stop()
        for upstream in upstreams.values():
            upstream.stop()


def _hostile_deployments(doc: dict[str, Any], capture_url: str, env_name: str) -> list[dict[str, Any]]:
    deployments = json.loads(json.dumps(doc["deployments"]))
    for deployment in deployments:
        if deployment["tier"] == "frontier":
            deployment["api_base"] = capture_url + "/v1"
            deployment["api_key"] = f"os.environ/{env_name}"
    return deployments


def _unsigned(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = {k: v for k, v in json.loads(json.dumps(doc)).items() if k not in ("signature", "content_hash")}
    out.update(changes)
    return with_content_hash(out)


# --- item 6 --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env_name", ["LITELLM_MASTER_KEY", "FINOPS_PROXY_TOKEN"])
def test_a_bundle_cannot_send_the_master_key_or_proxy_token_to_another_server(
    setup: Setup, env_name: str
) -> None:
    hostile = dev_signed(
        _unsigned(
            setup.boot,
            version=f"hostile-{env_name}",
            deployments=_hostile_deployments(setup.boot, setup.capture.url, env_name),
        )
    )  # as the control plane would sign an edit by a (non-admin) MLOps user
    status, body, _ = setup.proxy.push_bundle(hostile)
    assert status == 422, body
    assert any(env_name in e and "FINOPS_ALLOWED_KEY_ENVS" in e for e in body["errors"])
    chat_status, _, _ = setup.proxy.chat(KEY, "hello")
    assert chat_status == 200
    assert setup.capture.authorizations == []  # the variable never left the proxy
    assert setup.proxy.status()["applied_hash"] == setup.boot["content_hash"]


def test_an_allowed_key_variable_still_works(setup: Setup) -> None:
    before = setup.upstreams["frontier"].state.snapshot()["requests"]
    status, _, _ = setup.proxy.chat(KEY, "hello again")
    assert status == 200 and setup.upstreams["frontier"].state.snapshot()["requests"] == before + 1
    assert MASTER_KEY.startswith("sk-")


# --- item 7 --------------------------------------------------------------------------------------------


def test_unsigned_forged_and_tampered_pushes_are_refused(setup: Setup) -> None:
    diverted = _hostile_deployments(setup.boot, setup.capture.url, "FINOPS_TEST_UPSTREAM_KEY")
    unsigned = _unsigned(setup.boot, version="unsigned", deployments=diverted)
    forged = signing.sign_bundle(
        unsigned, signing.bundle_private_key(signing.DEV_BUNDLE_SIGNING_SEED[:-8] + "AAAAAAA=")
    )
    tampered = _unsigned(setup.boot, version="tampered", deployments=diverted)
    tampered["signature"] = setup.boot["signature"]  # a real signature, of other content
    for doc, reason in ((unsigned, "missing"), (forged, "does not trust"), (tampered, "does not match")):
        status, body, _ = setup.proxy.push_bundle(doc)
        assert status == 422 and any(reason in e for e in body["errors"]), body
    setup.proxy.chat(KEY, "still the real upstream?")
    assert setup.capture.authorizations == []
    assert setup.proxy.status()["applied_hash"] == setup.boot["content_hash"]


def test_an_unsigned_bundle_from_the_pull_is_not_applied(setup: Setup) -> None:
    unsigned = _unsigned(setup.boot, version="pulled-unsigned")
    setup.double.set_bundle(unsigned)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            errors = setup.proxy.status()["errors"]
            if any("rejected bundle from pull" in e and "signature" in e for e in errors):
                break
            time.sleep(0.2)
        status = setup.proxy.status()
        assert any("rejected bundle from pull" in e and "signature" in e for e in status["errors"]), status
        assert status["applied_hash"] == setup.boot["content_hash"]
    finally:
        setup.double.set_bundle(setup.boot)


def test_a_forged_last_known_good_file_is_not_applied_on_restart(tmp_path: Path) -> None:
    upstream = FakeUpstream(UpstreamBehaviour(name="lkg")).start()
    try:
        good = sample_bundle(
            small_base=upstream.base_url, frontier_base=upstream.base_url, keys={KEY: ("team-a", "security")}
        )
        proxy = ProxyProcess(good, tmp_path, proxy_token=TOKEN)
        proxy.write_config()
        forged = _unsigned(good, version="forged-on-disk", keys=[])
        (proxy.state_dir / "bundle.json").write_text(json.dumps(forged))
        proxy.start()
        try:
            status = proxy.status()
            assert status["applied_version"] != "forged-on-disk"
            assert any("last-known-good" in e and "signature" in e for e in status["errors"]), status
        finally:
            proxy.stop()
    finally:
        upstream.stop()


def test_the_proxy_client_does_not_follow_redirects_with_its_token() -> None:
    capture = CaptureServer()
    redirector = Redirector(capture.url)
    try:
        client = ControlPlaneClient(redirector.url, "proxy-token-secret")
        pulled = client.pull_bundle(None)
        beat = client.heartbeat({"applied_version": None})
        shipped = client.post_spend([])
        assert redirector.hits == 3 and capture.authorizations == []
        assert {pulled.status, beat.status, shipped.status} == {307} and "refused" in pulled.error
    finally:
        redirector.stop()
        capture.stop()


def test_plain_http_control_plane_is_refused_off_this_host() -> None:
    with pytest.raises(ValueError, match="FINOPS_ALLOW_HTTP_CONTROL_PLANE"):
        check_control_plane_url("http://control.example.com", allow_http=False)
    check_control_plane_url("https://control.example.com", allow_http=False)
    check_control_plane_url("http://127.0.0.1:8000", allow_http=False)
    check_control_plane_url("http://web:8000", allow_http=True)


def test_content_hash_ignores_the_signature_so_signing_does_not_change_versions(setup: Setup) -> None:
    assert content_hash(setup.boot) == setup.boot["content_hash"]


def test_the_ingest_secret_half_of_the_credential_never_leaves_the_proxy(monkeypatch, tmp_path: Path) -> None:
    """FINOPS_PROXY_TOKEN is `<token>.<ingest secret>`: requests carry the token; spend is signed with the
    secret, which is in no header or body, so reading the traffic gives no way to sign spend."""
    from routing.proxy.settings import ProxySettings

    seen: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"accepted": 0, "duplicates": 0, "rejected": []}')

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("FINOPS_PROXY_TOKEN", "fpx-pulltoken.fps-ingestsecret")
        monkeypatch.setenv("FINOPS_CONTROL_PLANE_URL", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("FINOPS_STATE_DIR", str(tmp_path))
        settings = ProxySettings.from_env()
        assert (settings.proxy_token, settings.ingest_secret) == ("fpx-pulltoken", "fps-ingestsecret")
        client = ControlPlaneClient(
            settings.control_plane_url, settings.proxy_token, ingest_secret=settings.ingest_secret
        )
        assert client.post_spend([{"event_id": "e"}]).status == 200
        client.heartbeat({"applied_version": None})
        (headers, body), (beat_headers, beat_body) = seen
        assert headers["authorization"] == "Bearer fpx-pulltoken"
        wire = json.dumps([headers, beat_headers]) + body.decode() + beat_body.decode()
        assert "ingestsecret" not in wire
        ts, signature = headers[signing.TIMESTAMP_HEADER.lower()], headers[signing.SIGNATURE_HEADER.lower()]
        assert signing.verify(signing.signing_key("fps-ingestsecret"), ts, body, signature)
        assert not signing.verify(signing.signing_key("fpx-pulltoken"), ts, body, signature)
    finally:
        server.shutdown()
