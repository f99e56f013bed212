"""When a small model's breaker opens, SLM attempts already in flight fall back at once instead of waiting.

How LiteLLM runs an attempt (litellm 1.108): the proxy runs `Router.acompletion` in one asyncio task
per request; in that task the router calls `litellm.acompletion`, whose wrapper awaits our
`async_pre_call_deployment_hook` and then the provider call, which for an OpenAI-compatible deployment
awaits the OpenAI SDK, then httpx, then the client's transport. The failure event of that attempt is
logged in the same task before the router starts the fallback. So:

- the deployment hook marks the task's context (`CURRENT_ATTEMPT`, a ContextVar) with the SLM attempt
  it is about to make (group, the breaker's open count at admission, call id), and clears it for any
  other attempt (the frontier fallback, an escalation);
- the HTTP client LiteLLM uses for OpenAI-compatible deployments (`litellm.aclient_session`) has
  `AbandoningTransport` around LiteLLM's own transport. For a marked request it waits for the
  response or for the group's breaker to open, whichever comes first. When the breaker opens it
  closes the request (the SLM sees the connection drop) and raises `SlmAbandoned`, an
  `httpx.ConnectError`: LiteLLM reports a connection error and falls back to the frontier group at
  once, exactly as for a refused connection. A request whose breaker opened before it was sent is
  never sent.

Cancelling the request's task instead would not work: nothing between the task and the socket turns
a CancelledError into an error the router falls back on, so the caller would get no answer at all.
Only unmarked requests (frontier, escalations, anything not routed small) pass through untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger("finops.abandon")

ABANDONED_ERROR = "CircuitBreakerOpen"  # error class of an SLM attempt abandoned because its breaker opened


@dataclass(frozen=True)
class SlmAttempt:
    """The SLM attempt the current task is making: its group, the breaker's open count when admitted."""

    group: str
    generation: int
    call_id: str


CURRENT_ATTEMPT: ContextVar[SlmAttempt | None] = ContextVar("finops_slm_attempt", default=None)


class SlmAbandoned(httpx.ConnectError):
    """The attempt was cut off because its small model's breaker opened while it waited."""


class OpenSignals:
    """Per small model group, a future on the event loop that resolves when the group's breaker opens."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._futures: dict[str, asyncio.Future[None]] = {}

    def future(self, group: str) -> asyncio.Future[None]:
        """On the event loop: the future the next opening of `group`'s breaker resolves."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._futures = loop, {}
        found = self._futures.get(group)
        if found is None or found.done():
            found = self._futures[group] = loop.create_future()
        return found

    def fire(self, group: str) -> None:
        """From any thread: wake every request waiting on `group`."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            if _running_loop() is loop:
                self._fire(group)
            else:
                loop.call_soon_threadsafe(self._fire, group)
        except RuntimeError:  # the loop is shutting down: nothing is waiting any more
            pass

    def _fire(self, group: str) -> None:
        found = self._futures.pop(group, None)
        if found is not None and not found.done():
            found.set_result(None)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class AbandoningTransport(httpx.AsyncBaseTransport):
    """LiteLLM's transport, with marked SLM requests cut off when their breaker opens."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        opened_since: Callable[[SlmAttempt], bool],
        signals: OpenSignals,
        on_abandon: Callable[[SlmAttempt], None],
    ) -> None:
        self._inner = inner
        self._opened_since = opened_since
        self._signals = signals
        self._on_abandon = on_abandon

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        attempt = CURRENT_ATTEMPT.get()
        if attempt is None:
            return await self._inner.handle_async_request(request)
        opened = self._signals.future(attempt.group)  # subscribe before checking: no opening slips between
        if self._opened_since(attempt):
            raise self._abandon(attempt, request)
        sending = asyncio.ensure_future(self._inner.handle_async_request(request))
        try:
            await asyncio.wait((sending, opened), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the caller went away: take the request down with it
            sending.cancel()
            raise
        if sending.done():
            return sending.result()
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sending
        raise self._abandon(attempt, request)

    def _abandon(self, attempt: SlmAttempt, request: httpx.Request) -> SlmAbandoned:
        self._on_abandon(attempt)
        return SlmAbandoned(
            f"finops: the circuit breaker of small model '{attempt.group}' opened while this attempt waited; "
            "abandoned, falling back to the frontier model",
            request=request,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


def install(
    *,
    opened_since: Callable[[SlmAttempt], bool],
    signals: OpenSignals,
    on_abandon: Callable[[SlmAttempt], None],
) -> str | None:
    """Give LiteLLM's OpenAI-compatible deployments an HTTP client with the abandoning transport.

    Built like LiteLLM's own default client (same transport, TLS and proxy settings). Returns a
    problem to report when it could not be installed (in-flight attempts then wait out the timeout).
    """
    import litellm

    if litellm.aclient_session is not None:
        return (
            "litellm.aclient_session is already set by someone else: SLM attempts in flight when the breaker "
            "opens will wait out the SLM timeout"
        )
    try:
        from litellm.llms.custom_httpx.http_handler import (
            AsyncHTTPHandler,
            get_ssl_configuration,
            http2_enabled,
        )

        ssl_config: Any = get_ssl_configuration()
        inner = AsyncHTTPHandler.create_async_transport(
            ssl_context=ssl_config if not isinstance(ssl_config, bool) else None,
            ssl_verify=ssl_config if isinstance(ssl_config, bool) else None,
        ) or httpx.AsyncHTTPTransport(verify=ssl_config, http2=http2_enabled())
        transport = AbandoningTransport(
            inner, opened_since=opened_since, signals=signals, on_abandon=on_abandon
        )
        litellm.aclient_session = httpx.AsyncClient(
            verify=ssl_config,
            transport=transport,
            mounts=AsyncHTTPHandler.create_httpx_proxy_mounts(inner, verify=ssl_config, cert=None),
            follow_redirects=True,
            http2=http2_enabled(),
        )
    except Exception as exc:  # routing works without it; only the abandoning is lost
        return f"could not install the abandoning HTTP client: {type(exc).__name__}: {exc}"
    return None
