"""Reads of the control plane's own records, scoped to what a user may see (views and the API share them)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from controlplane.models import AuditEntry, Membership
from controlplane.permissions import is_org_wide, visible_teams


def audit_entries_for(user: Any) -> QuerySet[AuditEntry]:
    """Every audit entry for org-wide roles; a team member sees the entries of their teams."""
    entries = AuditEntry.objects.select_related("team")
    if is_org_wide(user):
        return entries
    return entries.filter(team__in=visible_teams(user))


def memberships_for(user: Any) -> QuerySet[Membership]:
    """Every membership for org-wide roles; a team member sees the memberships of their teams."""
    memberships = Membership.objects.select_related("user", "team")
    if is_org_wide(user):
        return memberships
    return memberships.filter(team__in=visible_teams(user))
