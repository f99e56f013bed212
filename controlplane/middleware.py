"""Request ids: every request carries one (from X-Request-ID or new), echoed back and stored in audit entries.
And a lost database answers 503 with a retry hint, not a 500 (a Postgres restart under ingest)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from contextvars import ContextVar

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

current_request_id: ContextVar[str] = ContextVar("current_request_id", default="")
_VALID_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _VALID_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        token = current_request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            current_request_id.reset(token)
        response["X-Request-ID"] = request_id
        return response


class DatabaseUnavailableMiddleware:
    """A view that loses the database (server restarting, stopped, connection dropped) answers 503 with
    Retry-After, like /readyz, instead of a 500: proxies keep the batch in their spool and retry."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        response = JsonResponse(
            {
                "detail": "The database is unavailable (restarting or down); retry in a few seconds.",
                "code": "database_unavailable",
            },
            status=503,
        )
        response["Retry-After"] = "5"
        return response
