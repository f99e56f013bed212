"""Tenancy services and the audit log. Every change a user makes goes through a function here or in
another app's services, and every one of them calls `audit_record` inside the same transaction."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from django.db import models, transaction

from controlplane.middleware import current_request_id
from controlplane.models import AuditAction, AuditEntry, Feature, Membership, Team
from controlplane.permissions import team_id_of


def _plain(value: Any) -> Any:
    """A JSON-safe form of a field value for the audit diff."""
    if isinstance(value, models.Model):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def snapshot(obj: models.Model, fields: Iterable[str]) -> dict[str, Any]:
    """Field values of `obj` (foreign keys by their display name) for before/after diffs."""
    return {name: _plain(getattr(obj, name)) for name in fields}


def stored_snapshot(obj: models.Model, fields: Iterable[str]) -> dict[str, Any]:
    """Snapshot of the row as stored; a bound ModelForm has already changed the instance in memory."""
    return snapshot(type(obj)._default_manager.get(pk=obj.pk), fields)


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """{field: [before, after]} for every field whose value changed (a missing side is None)."""
    changed: dict[str, list[Any]] = {}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old != new:
            changed[name] = [old, new]
    return changed


SECRET_FIELDS = frozenset({"webhook_url"})  # recorded as changed, never with their value


def mask_secret(value: Any) -> Any:
    """What the audit log keeps of a secret URL: scheme and host, and a short fingerprint to tell versions apart."""
    if not value:
        return value
    text = str(value)
    scheme, _, rest = text.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1] if rest else ""
    fingerprint = hashlib.sha256(text.encode()).hexdigest()[:8]
    return (
        f"{scheme}://{host}/… (hidden, fingerprint {fingerprint})"
        if host
        else f"(hidden, fingerprint {fingerprint})"
    )


def masked_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """`diff` with the values of secret fields replaced by their masked form."""
    changes = diff(before, after)
    for name in SECRET_FIELDS & changes.keys():
        changes[name] = [mask_secret(v) for v in changes[name]]
    return changes


def audit_record(
    *,
    actor: Any,
    action: str,
    obj: models.Model,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    note: str = "",
    object_type: str | None = None,
) -> AuditEntry:
    """Write one audit entry; call it inside the transaction that makes the change."""
    team_id = team_id_of(obj)
    return AuditEntry.objects.create(
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        actor_name=getattr(actor, "get_username", lambda: "system")() if actor is not None else "system",
        action=action,
        object_type=object_type or obj._meta.label,
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        team_id=team_id,
        changes=masked_diff(before or {}, after or {}),
        note=note,
        request_id=current_request_id.get(),
    )


TEAM_FIELDS = ("name", "slug", "description", "timezone", "webhook_url")
FEATURE_FIELDS = ("team", "name", "slug", "description", "owner", "is_active")
MEMBERSHIP_FIELDS = ("user", "team", "role")


def _apply(obj: models.Model, values: Mapping[str, Any]) -> None:
    for name, value in values.items():
        setattr(obj, name, value)
    obj.full_clean()
    obj.save()


M = TypeVar("M", bound=models.Model)


def audited_create(*, actor: Any, obj: M, fields: Iterable[str], values: Mapping[str, Any]) -> M:
    """Validate and save a new object with `values`, auditing it; call inside the caller's transaction."""
    _apply(obj, values)
    audit_record(actor=actor, action=AuditAction.CREATE, obj=obj, after=snapshot(obj, fields))
    return obj


def audited_update(*, actor: Any, obj: M, fields: Iterable[str], values: Mapping[str, Any]) -> M:
    """Validate and save changes, auditing the stored-before vs after diff (nothing when nothing changed)."""
    before = stored_snapshot(obj, fields)
    _apply(obj, values)
    after = snapshot(obj, fields)
    if before != after:
        audit_record(actor=actor, action=AuditAction.UPDATE, obj=obj, before=before, after=after)
    return obj


@transaction.atomic
def team_create(*, actor: Any, **values: Any) -> Team:
    return audited_create(actor=actor, obj=Team(), fields=TEAM_FIELDS, values=values)


@transaction.atomic
def team_update(*, actor: Any, team: Team, **values: Any) -> Team:
    return audited_update(actor=actor, obj=team, fields=TEAM_FIELDS, values=values)


@transaction.atomic
def feature_create(*, actor: Any, **values: Any) -> Feature:
    return audited_create(actor=actor, obj=Feature(), fields=FEATURE_FIELDS, values=values)


@transaction.atomic
def feature_update(*, actor: Any, feature: Feature, **values: Any) -> Feature:
    return audited_update(actor=actor, obj=feature, fields=FEATURE_FIELDS, values=values)


@transaction.atomic
def membership_create(*, actor: Any, **values: Any) -> Membership:
    return audited_create(actor=actor, obj=Membership(), fields=MEMBERSHIP_FIELDS, values=values)


@transaction.atomic
def membership_update(*, actor: Any, membership: Membership, **values: Any) -> Membership:
    return audited_update(actor=actor, obj=membership, fields=MEMBERSHIP_FIELDS, values=values)


@transaction.atomic
def membership_delete(*, actor: Any, membership: Membership) -> None:
    before = snapshot(membership, MEMBERSHIP_FIELDS)
    audit_record(actor=actor, action=AuditAction.DELETE, obj=membership, before=before)
    membership.delete()
