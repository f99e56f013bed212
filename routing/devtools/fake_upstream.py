"""A small OpenAI-compatible upstream for tests and the demo, told at runtime to be slow, hang or fail.

Run: `python -m routing.devtools.fake_upstream --port 9100 --name slm --latency-ms 20`.
`POST /_control` with a JSON object changes any behaviour field (see `UpstreamBehaviour`);
`GET /_control` returns the behaviour and request counters; `POST /_control/reset` zeroes counters.
`down: true` makes it drop every connection without an answer (and, in process, refuse new ones:
the port is closed), as a dead model server does. `FakeUpstream.schedule([(10.0, {"down": True})])`
switches faults at set times (seconds from the call), for the scenario benchmark.
Stdlib only so it starts in milliseconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_OTHER_ENDPOINTS = (
    "/v1/completions",
    "/completions",
    "/v1/embeddings",
    "/embeddings",
    "/v1/responses",
    "/responses",
)


@dataclass
class UpstreamBehaviour:
    """What the fake model does with the next request."""

    name: str = "fake"  # echoed in every answer so a test can tell which upstream served
    latency_ms: float = 0.0
    hang_rate: float = 0.0  # share of requests that never answer within hang_s
    hang_s: float = 60.0
    error_rate: float = 0.0
    error_status: int = 500
    logprob: float | None = None  # mean token logprob to report when the client asks for logprobs
    prompt_tokens: int | None = None  # None: estimate from the prompt length
    completion_tokens: int = 8
    reply: str = ""  # empty: "answer from <name>"
    stream_chunk_ms: float = 0.0  # delay between streamed chunks
    down: bool = False  # drop connections without answering (a dead server)
    even_faults: bool = False  # hangs and errors spread evenly (exactly the rates) instead of drawn at random
    # A model that fails on one kind of ask: a prompt holding any of these words gets an error, for
    # `fail_share` of such prompts (picked by a hash of the prompt, so the same prompt always fares the same)
    fail_words: list[str] = field(default_factory=list)
    fail_share: float = 1.0


class UpstreamState:
    """Behaviour plus counters, shared by the handler threads."""

    def __init__(self, behaviour: UpstreamBehaviour) -> None:
        self.behaviour = behaviour
        self.lock = threading.Lock()
        self.requests = 0
        self.completions = 0
        self.errors = 0
        self.hangs = 0
        self.refused = 0
        self.hang_credit = self.error_credit = 0.5  # even faults: the first one half a period in
        self.last_request: dict[str, Any] = {}

    def update(self, changes: dict[str, Any]) -> None:
        known = {f.name for f in fields(UpstreamBehaviour)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown behaviour fields {unknown}: use {sorted(known)}")
        with self.lock:
            for key, value in changes.items():
                setattr(self.behaviour, key, value)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "behaviour": asdict(self.behaviour),
                "requests": self.requests,
                "completions": self.completions,
                "errors": self.errors,
                "hangs": self.hangs,
                "refused": self.refused,
                "last_request": self.last_request,
            }

    def reset(self) -> None:
        with self.lock:
            self.requests = self.completions = self.errors = self.hangs = self.refused = 0
            self.last_request = {}


def estimate_tokens(messages: list[dict[str, Any]]) -> int:
    """The prompt tokens the fake reports: a character count over four (billing.synthetic's demo mix too)."""
    text = "".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
    return max(1, len(text) // 4)


def _fails_on(messages: list[Any], words: list[str], share: float) -> bool:
    text = " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict)).lower()
    if not any(word.lower() in text for word in words):
        return False
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share


def _logprobs(count: int, mean: float) -> dict[str, Any]:
    return {
        "content": [{"token": "x", "logprob": mean, "bytes": [120], "top_logprobs": []} for _ in range(count)]
    }


class _Handler(BaseHTTPRequestHandler):
    server: _UpstreamServer
    protocol_version = "HTTP/1.1"  # keep-alive, as real providers serve
    # Headers and body leave in one write (flushed after each request; streams flush per chunk), with
    # Nagle off: a header write followed by a body write would otherwise wait on the client's delayed ACK.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return  # quiet: tests read counters, not logs

    def _send_json(self, status: int, body: Any) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        return json.loads(raw or b"{}")

    def do_GET(self) -> None:
        state = self.server.state
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._send_json(
                200, {"object": "list", "data": [{"id": state.behaviour.name, "object": "model"}]}
            )
        elif self.path == "/_control":
            self._send_json(200, state.snapshot())
        elif self.path == "/health":
            self._send_json(200, {"ok": True})
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        state = self.server.state
        try:
            body = self._read_json()
        except json.JSONDecodeError as exc:
            self._send_json(400, {"error": {"message": f"bad JSON: {exc}"}})
            return
        if self.path == "/_control":
            try:
                state.update(body)
            except ValueError as exc:
                self._send_json(400, {"error": str(exc)})
                return
            self._send_json(200, state.snapshot())
        elif self.path == "/_control/reset":
            state.reset()
            self._send_json(200, state.snapshot())
        elif self.path.rstrip("/") in ("/v1/chat/completions", "/chat/completions"):
            self._chat(body)
        elif self.path.rstrip("/") in _OTHER_ENDPOINTS:
            self._other(self.path.rstrip("/").removeprefix("/v1"), body)
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})

    def _other(self, endpoint: str, body: dict[str, Any]) -> None:
        """Minimal non-chat answers, so a test can see whether a call type reaches the upstream at all."""
        state = self.server.state
        with state.lock:
            state.requests += 1
            state.last_request = body
            name = state.behaviour.name
        usage = {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
        model = str(body.get("model") or name)
        if endpoint == "/embeddings":
            answer: dict[str, Any] = {
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
                "model": model,
                "usage": {"prompt_tokens": 5, "total_tokens": 5},
            }
        elif endpoint == "/completions":
            answer = {
                "id": f"cmpl-{uuid.uuid4().hex[:12]}",
                "object": "text_completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "text": f"answer from {name}", "finish_reason": "stop"}],
                "usage": usage,
            }
        else:  # /responses
            answer = {
                "id": f"resp_{uuid.uuid4().hex[:12]}",
                "object": "response",
                "created_at": int(time.time()),
                "status": "completed",
                "model": model,
                "output": [
                    {
                        "type": "message",
                        "id": f"msg_{uuid.uuid4().hex[:12]}",
                        "status": "completed",
                        "role": "assistant",
                        "content": [
                            {"type": "output_text", "text": f"answer from {name}", "annotations": []}
                        ],
                    }
                ],
                "usage": {"input_tokens": 5, "output_tokens": 5, "total_tokens": 10},
            }
        self._send_json(200, answer)

    def _chat(self, body: dict[str, Any]) -> None:
        state = self.server.state
        with state.lock:
            b = UpstreamBehaviour(**asdict(state.behaviour))
            if b.down:
                state.refused += 1
            else:
                state.requests += 1
                state.last_request = body
            if b.even_faults and not b.down:  # a fault each time its running credit reaches one
                state.hang_credit += b.hang_rate
                state.error_credit += b.error_rate
                hang = state.hang_credit >= 1.0
                state.hang_credit -= hang
                error = not hang and state.error_credit >= 1.0
                state.error_credit -= error
        if b.down:
            self.close_connection = True  # a keep-alive connection opened before it went down
            return
        if not b.even_faults:
            hang, error = random.random() < b.hang_rate, random.random() < b.error_rate
        if b.fail_words and not hang and _fails_on(body.get("messages") or [], b.fail_words, b.fail_share):
            error = True
        if hang:
            with state.lock:
                state.hangs += 1
            time.sleep(b.hang_s)  # the client's timeout should fire long before this
            return
        if b.latency_ms:
            time.sleep(b.latency_ms / 1000.0)
        if error:
            with state.lock:
                state.errors += 1
            self._send_json(
                b.error_status, {"error": {"message": f"{b.name} failed on purpose", "type": "server_error"}}
            )
            return
        with state.lock:
            state.completions += 1
        messages = body.get("messages") or []
        prompt_tokens = b.prompt_tokens if b.prompt_tokens is not None else estimate_tokens(messages)
        reply = b.reply or f"answer from {b.name}"
        want_logprobs = bool(body.get("logprobs")) and b.logprob is not None
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": b.completion_tokens,
            "total_tokens": prompt_tokens + b.completion_tokens,
        }
        call_id = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        model = str(body.get("model") or b.name)
        if body.get("stream"):
            self._stream(call_id, model, reply, usage, b)
            return
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": reply},
            "finish_reason": "stop",
        }
        if want_logprobs:
            choice["logprobs"] = _logprobs(b.completion_tokens, float(b.logprob or 0.0))
        self._send_json(
            200,
            {
                "id": call_id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [choice],
                "usage": usage,
            },
        )

    def _stream(
        self, call_id: str, model: str, reply: str, usage: dict[str, int], b: UpstreamBehaviour
    ) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        words = reply.split(" ")
        for i, word in enumerate(words):
            chunk = {
                "id": call_id,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": {"content": word + (" " if i < len(words) - 1 else "")}}],
            }
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
            if b.stream_chunk_ms:
                time.sleep(b.stream_chunk_ms / 1000.0)
        final = {
            "id": call_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": usage,
        }
        self.wfile.write(f"data: {json.dumps(final)}\n\ndata: [DONE]\n\n".encode())
        self.wfile.flush()
        self.close_connection = True


class _UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], state: UpstreamState) -> None:
        super().__init__(address, _Handler)
        self.state = state


class FakeUpstream:
    """An in-process fake upstream on a background thread (for tests that do not need a subprocess)."""

    def __init__(
        self, behaviour: UpstreamBehaviour | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.state = UpstreamState(behaviour or UpstreamBehaviour())
        self.host = host
        self.server: _UpstreamServer | None = _UpstreamServer((host, port), self.state)
        self._port = int(self.server.server_address[1])
        self._listen_lock = threading.Lock()
        self._timers: list[threading.Timer] = []

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeUpstream:
        with self._listen_lock:
            if self.server is None:
                self.server = _UpstreamServer((self.host, self._port), self.state)
            server = self.server
        threading.Thread(target=server.serve_forever, name="fake-upstream", daemon=True).start()
        return self

    def _close_port(self) -> None:
        with self._listen_lock:
            server, self.server = self.server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def apply(self, changes: dict[str, Any]) -> None:
        """Change behaviour now; `down` also closes the port (connection refused) or opens it again."""
        self.state.update(changes)
        if changes.get("down") is True:
            self._close_port()
        elif changes.get("down") is False and self.server is None:
            self.start()

    def schedule(self, steps: list[tuple[float, dict[str, Any]]]) -> None:
        """Apply each step's changes `at` seconds from now."""
        for at, changes in steps:
            timer = threading.Timer(at, self.apply, args=(changes,))
            timer.daemon = True
            timer.start()
            self._timers.append(timer)

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._close_port()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--name", default="fake")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--hang-rate", type=float, default=0.0)
    parser.add_argument("--hang-s", type=float, default=60.0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--error-status", type=int, default=500)
    parser.add_argument(
        "--logprob", type=float, default=None, help="mean token logprob when logprobs are asked for"
    )
    parser.add_argument("--prompt-tokens", type=int, default=None)
    parser.add_argument("--completion-tokens", type=int, default=8)
    parser.add_argument("--reply", default="")
    parser.add_argument("--stream-chunk-ms", type=float, default=0.0)
    parser.add_argument(
        "--even-faults",
        action="store_true",
        help="hangs and errors spread evenly at exactly their rates instead of drawn at random",
    )
    args = parser.parse_args(argv)
    behaviour = UpstreamBehaviour(
        name=args.name,
        latency_ms=args.latency_ms,
        hang_rate=args.hang_rate,
        hang_s=args.hang_s,
        error_rate=args.error_rate,
        error_status=args.error_status,
        logprob=args.logprob,
        prompt_tokens=args.prompt_tokens,
        completion_tokens=args.completion_tokens,
        reply=args.reply,
        stream_chunk_ms=args.stream_chunk_ms,
        even_faults=args.even_faults,
    )
    server = _UpstreamServer((args.host, args.port), UpstreamState(behaviour))
    print(f"fake upstream {args.name!r} on http://{args.host}:{server.server_address[1]}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
