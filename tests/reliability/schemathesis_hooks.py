"""Schemathesis checks of our own (loaded through SCHEMATHESIS_HOOKS by test_schemathesis.py).

Every 4xx must carry a body that names the problem: a JSON object or list with at least one non-empty
message (DRF's `detail`, field errors, ...), or a non-empty text page."""

from __future__ import annotations

import json
from typing import Any

import schemathesis


def _has_message(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, dict):
        return any(_has_message(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_message(v) for v in value)
    return False


@schemathesis.check
def client_error_names_the_problem(ctx, response, case):
    """A 4xx answer says what was wrong (HEAD answers have no body by definition)."""
    if not 400 <= response.status_code < 500 or case.method.upper() == "HEAD":
        return None
    text = response.text or ""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if body is None:
        if not text.strip():
            raise AssertionError(f"{response.status_code} with an empty body: the client is not told why")
        return None
    if not _has_message(body):
        raise AssertionError(f"{response.status_code} body names no problem: {text[:200]}")
    return None
