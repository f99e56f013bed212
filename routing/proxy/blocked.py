"""Counts of calls the proxy refused (revoked or expired key, over budget, endpoint not served).

A refused call costs nothing, so it gets no spend record; it gets a tally. Refusals are counted in
memory per (team, feature, reason) and drained by the shipper thread into one small counter record
per key per drain, so a key holder hammering the proxy adds one spool row a second, not one a call.
Counter records travel in the same signed batches as spend records (`kind: "blocked"`).
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from routing.engine.spend import BLOCKED_KIND, BLOCKED_REASONS, SCHEMA_VERSION


class BlockedCalls:
    """A thread-safe tally of refused calls, drained into counter records."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str, str, str], int] = {}
        self._since = datetime.now(UTC)
        self.total = 0

    def count(self, who: Any, reason: str) -> None:
        """Count one refusal for `who` (a FeatureKey or anything with team/feature and their codes)."""
        if reason not in BLOCKED_REASONS:
            reason = "endpoint"
        key = (
            str(getattr(who, "team", "") or ""),
            str(getattr(who, "feature", "") or ""),
            str(getattr(who, "team_code", "") or ""),
            str(getattr(who, "feature_code", "") or ""),
            reason,
        )
        if not key[0] or not key[1]:
            return  # nothing to attribute it to
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            self.total += 1

    def drain(self) -> list[dict[str, Any]]:
        """Counter records for everything counted since the last drain (and reset the tally)."""
        now = datetime.now(UTC)
        with self._lock:
            counts, since = self._counts, self._since
            self._counts, self._since = {}, now
        return [
            {
                "schema": SCHEMA_VERSION,
                "kind": BLOCKED_KIND,
                "event_id": uuid.uuid4().hex,
                "team": team,
                "feature": feature,
                "team_code": team_code,
                "feature_code": feature_code,
                "reason": reason,
                "count": count,
                "window_start": since.isoformat(),
                "window_end": max(now, since).isoformat(),
            }
            for (team, feature, team_code, feature_code, reason), count in counts.items()
        ]
