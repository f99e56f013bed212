"""The plugin's own HTTP endpoints on the proxy's FastAPI app: bundle push and status.

Both take `Authorization: Bearer <FINOPS_PROXY_TOKEN>`. They are plain (sync) handlers, so
FastAPI runs them in its thread pool and a bundle write never blocks the event loop.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from routing.proxy.runtime import ProxyRuntime, get_runtime

BUNDLE_ROUTE = "/finops/v1/bundle"
STATUS_ROUTE = "/finops/v1/status"


def _authorized(runtime: ProxyRuntime, authorization: str | None) -> bool:
    token = runtime.settings.proxy_token
    presented = (authorization or "").removeprefix("Bearer ").strip()
    return bool(token) and hmac.compare_digest(presented.encode(), token.encode())


def _unauthorized() -> JSONResponse:
    return JSONResponse(
        {"errors": ["missing or wrong proxy token: send Authorization: Bearer <FINOPS_PROXY_TOKEN>"]}, 401
    )


def register(app: FastAPI) -> None:
    """Add the routes once (the plugin module may be imported more than once)."""
    if any(getattr(route, "path", None) == BUNDLE_ROUTE for route in app.routes):
        return

    async def put_bundle(request: Request) -> JSONResponse:
        runtime = get_runtime()
        if not _authorized(runtime, request.headers.get("authorization")):
            return _unauthorized()
        raw = await request.body()
        try:
            doc: Any = json.loads(raw)
        except ValueError as exc:
            return JSONResponse({"errors": [f"$: body is not JSON ({exc}): send the bundle document"]}, 400)
        from starlette.concurrency import run_in_threadpool

        errors = await run_in_threadpool(runtime.apply_bundle, doc, source="push")
        if errors:
            return JSONResponse({"errors": errors}, 422)
        bundle = runtime.bundle
        assert bundle is not None
        return JSONResponse({"applied_version": bundle.version, "applied_hash": bundle.content_hash})

    async def get_status(request: Request) -> JSONResponse:
        runtime = get_runtime()
        if not _authorized(runtime, request.headers.get("authorization")):
            return _unauthorized()
        return JSONResponse(runtime.status())

    app.add_api_route(BUNDLE_ROUTE, put_bundle, methods=["PUT"], include_in_schema=False)
    app.add_api_route(STATUS_ROUTE, get_status, methods=["GET"], include_in_schema=False)
