"""Routing services: deployments, policies, feature keys, publishing bundles and rolling them out.

Every change a user makes is audited inside its transaction. A rollout runs in Celery
(`routing.tasks.rollout_run`, queued on commit) and goes: canary first (push, then watch it stay
healthy on the new bundle for a short window), then every other proxy in parallel threads with
per-proxy retries and backoff. A canary that rejects the bundle or goes away rolls the rollout back
(its target reverts to the previous bundle, which is pushed again); a dead non-canary proxy only
makes the rollout "partial". Proxies also pull their target on start and heartbeat, so a missed
push heals on its own.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from controlplane.models import AuditAction, Feature
from controlplane.permissions import Action, can
from controlplane.services import audit_record, audited_create, audited_update, snapshot
from routing import signals
from routing.compiler import compile_bundle
from routing.compiler import source_hash as compiler_source_hash
from routing.engine import signing
from routing.engine.bundle import canonical_json, content_hash, validate_bundle
from routing.models import (
    DEPLOYMENT_FIELDS,
    POLICY_FIELDS,
    RUNNING_STATUSES,
    Bundle,
    FeatureKey,
    ModelDeployment,
    Proxy,
    Rollout,
    RolloutKind,
    RolloutStatus,
    RolloutTarget,
    RoutingPolicy,
    TargetStatus,
)
from routing.selectors import pool_current_bundle
from routing.services.fleet import decrypt_token, proxy_base_url_problem

log = logging.getLogger("finops.rollout")

KEY_FIELDS = ("feature", "name", "prefix", "expires_at", "revoked_at")
FEATURE_KEY_PREFIX = "fk-"
PUSH_PATH = "/finops/v1/bundle"
STATUS_PATH = "/finops/v1/status"


def bundle_signed_document(document: dict[str, Any]) -> dict[str, Any]:
    """The bundle as proxies receive it: signed with the control plane's Ed25519 key (push, pull, downloads)."""
    from django.conf import settings

    return signing.sign_bundle(document, signing.bundle_private_key(settings.FINOPS_BUNDLE_SIGNING_KEY))


def bundle_public_key() -> str:
    """The public half of the signing key: what every proxy needs in FINOPS_BUNDLE_PUBLIC_KEYS."""
    from django.conf import settings

    return signing.bundle_public_key_b64(signing.bundle_private_key(settings.FINOPS_BUNDLE_SIGNING_KEY))


class BundleRejected(ValidationError):
    """A compiled bundle that failed validation; `errors` lists every problem in readable form."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__(errors)


# --- deployments and policies ------------------------------------------------------------------


ENDPOINT_FIELDS = ("api_base", "api_key_env")


def _require_endpoint_right(actor: Any, changed: list[str]) -> None:
    """Where a deployment sends which key is an admin decision: an MLOps edit could aim a key at any server."""
    if not changed or actor is None or can(actor, Action.EDIT_ENDPOINTS):
        return
    raise ValidationError(
        {
            name: "Only an admin sets where a deployment sends its key (URL and key variable): ask an admin."
            for name in changed
        }
    )


@transaction.atomic
def deployment_create(*, actor: Any, **values: Any) -> ModelDeployment:
    _require_endpoint_right(actor, [name for name in ENDPOINT_FIELDS if values.get(name)])
    return audited_create(actor=actor, obj=ModelDeployment(), fields=DEPLOYMENT_FIELDS, values=values)


@transaction.atomic
def deployment_update(*, actor: Any, deployment: ModelDeployment, **values: Any) -> ModelDeployment:
    stored = ModelDeployment.objects.get(pk=deployment.pk)  # a bound form already changed the instance
    changed = [n for n in ENDPOINT_FIELDS if n in values and (values[n] or "") != (getattr(stored, n) or "")]
    _require_endpoint_right(actor, changed)
    return audited_update(actor=actor, obj=deployment, fields=DEPLOYMENT_FIELDS, values=values)


@transaction.atomic
def policy_create(*, actor: Any, **values: Any) -> RoutingPolicy:
    feature = values.get("feature")
    if RoutingPolicy.objects.filter(feature=feature).exists():
        where = f"feature {feature.slug}" if feature else "the organisation"
        raise ValidationError({"feature": f"{where} already has a policy: edit it instead."})
    return audited_create(actor=actor, obj=RoutingPolicy(), fields=POLICY_FIELDS, values=values)


@transaction.atomic
def policy_update(*, actor: Any, policy: RoutingPolicy, **values: Any) -> RoutingPolicy:
    values.pop("feature", None)  # a policy stays with its feature
    return audited_update(actor=actor, obj=policy, fields=POLICY_FIELDS, values=values)


@transaction.atomic
def policy_delete(*, actor: Any, policy: RoutingPolicy) -> None:
    if policy.is_default:
        raise ValidationError("The default policy cannot be deleted: edit it instead.")
    audit_record(actor=actor, action=AuditAction.DELETE, obj=policy, before=snapshot(policy, POLICY_FIELDS))
    policy.delete()


# --- feature keys ---------------------------------------------------------------------------------


@transaction.atomic
def feature_key_create(
    *, actor: Any, feature: Feature, name: str, expires_at: Any = None
) -> tuple[FeatureKey, str]:
    """Issue a key; the plaintext is returned once and stored only as its hash and a short prefix."""
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError(
            {"expires_at": "The expiry is in the past: pick a future time or leave it empty."}
        )
    plaintext = FEATURE_KEY_PREFIX + secrets.token_urlsafe(32)
    key = FeatureKey(created_by=actor if getattr(actor, "is_authenticated", False) else None)
    values = {
        "feature": feature,
        "name": name,
        "expires_at": expires_at,
        "prefix": plaintext[:10],
        "key_hash": signing.token_hash(plaintext),
    }
    return audited_create(actor=actor, obj=key, fields=KEY_FIELDS, values=values), plaintext


@transaction.atomic
def feature_key_revoke(*, actor: Any, key: FeatureKey) -> FeatureKey:
    """Revoke a key and publish a revocation-only bundle at once, so a leaked key stops within a rollout."""
    if key.is_revoked:
        return key
    before = snapshot(key, KEY_FIELDS)
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at", "updated_at"])
    audit_record(
        actor=actor, action=AuditAction.REVOKE, obj=key, before=before, after=snapshot(key, KEY_FIELDS)
    )
    try:
        bundle_publish_revocations(actor=actor)
    except ValidationError as exc:  # a rollout is running: revocations_sync (every minute) retries
        log.warning("revocation of %s waits for the running rollout: %s", key.prefix, exc)
    return key


def _unshipped_revocations(document: dict[str, Any]) -> set[str]:
    """Hashes of revoked keys that the bundle still lets in."""
    revoked = set(FeatureKey.objects.filter(revoked_at__isnull=False).values_list("key_hash", flat=True))
    return {
        k["key_hash"] for k in document.get("keys", []) if k["key_hash"] in revoked and not k.get("revoked")
    }


def _revoke_in(doc: dict[str, Any]) -> str:
    hashes = _unshipped_revocations(doc)
    for entry in doc.get("keys", []):
        if entry["key_hash"] in hashes:
            entry["revoked"] = True
    return f"revoke {len(hashes)} feature key(s) (revocation only)" if hashes else ""


def _fleet_bases() -> dict[int | None, tuple[Bundle | None, list[str]]]:
    """What each pool runs now, grouped: {base bundle id: (base bundle, pools)}.

    A pool that was rolled back runs an older bundle than the latest; an automatic change is applied to
    what each pool runs, so it never carries that pool forward. Pools no rollout reached yet get the latest."""
    latest = Bundle.objects.order_by("-number").first()
    pools = sorted(set(Proxy.objects.filter(is_active=True).values_list("pool", flat=True)))
    groups: dict[int | None, tuple[Bundle | None, list[str]]] = {}
    for pool in pools or [""]:
        base = pool_current_bundle(pool) or latest
        key = base.pk if base is not None else None
        groups.setdefault(key, (base, []))[1].append(pool)
    return groups


@transaction.atomic
def bundle_publish_patch(
    *, actor: Any, patch: Callable[[dict[str, Any]], str], note: str = "", rollout: bool = True
) -> list[Bundle]:
    """Publish an automatic change on top of what the fleet already runs, and nothing else.

    `patch` edits a copy of a published document in place and returns what it did ("" for nothing).
    Staged edits never ship with it (they wait for someone with the publish right), and each pool gets
    its own base: a pool rolled back to v3 gets v3 plus the change, not the latest bundle. Needs no
    publish right: an automatic change only applies state the system owns (revocations, budget states,
    guardrail stops). Returns the bundles rolled out (none when no pool needed the change)."""
    Bundle.objects.select_for_update().order_by("-number").first()  # one publisher at a time
    groups = _fleet_bases()
    shipped: list[Bundle] = []
    single = len(groups) == 1
    for base, pools in groups.values():
        if base is None:
            continue  # nothing published yet: the first publish carries the change
        doc = {k: v for k, v in json.loads(json.dumps(base.document)).items() if k != "content_hash"}
        did = patch(doc)
        if not did:
            continue
        wanted = compiler_source_hash(doc)
        bundle = (
            Bundle.objects.filter(source_hash=wanted, number__gt=base.number).order_by("-number").first()
        )  # made before (its rollout failed or was blocked): roll that one out again instead of a twin
        if bundle is None:
            number = (Bundle.objects.aggregate(n=Max("number"))["n"] or 0) + 1
            doc["version"] = f"v{number}"
            doc["created_at"] = timezone.now().isoformat(timespec="seconds")
            doc["content_hash"] = content_hash(doc)
            errors = validate_bundle(doc)
            if errors:
                raise BundleRejected(errors)
            text = (note or did)[:500]
            bundle = Bundle.objects.create(
                number=number,
                version=doc["version"],
                content_hash=doc["content_hash"],
                source_hash=wanted,
                document=doc,
                config_yaml=base.config_yaml,
                note=text,
                created_by=actor if getattr(actor, "is_authenticated", False) else None,
            )
            audit_record(
                actor=actor,
                action=AuditAction.PUBLISH,
                obj=bundle,
                after={
                    "version": bundle.version,
                    "content_hash": bundle.content_hash,
                    "based_on": base.version,
                },
                note=text,
            )
        if rollout:
            for pool in [""] if single else pools:
                rollout_start(actor=actor, bundle=bundle, pool=pool, note=bundle.note, audit=False)
        shipped.append(bundle)
    return shipped


def bundle_publish_revocations(*, actor: Any, note: str = "") -> Bundle | None:
    """Publish what each pool runs again with every revoked key flagged, and nothing else changed.

    Revocation only narrows access, so it needs no publish right and ships none of the staged edits
    that a full publish would; a rolled-back pool stays on its version plus the revocation. Returns the
    newest bundle shipped, None when every pool already refuses every revoked key."""
    shipped = bundle_publish_patch(
        actor=actor, patch=_revoke_in, note=f"{note} (revocation only)" if note else ""
    )
    return shipped[-1] if shipped else None


def revocations_sync() -> Bundle | None:
    """The beat task's check: a revocation that could not roll out (a rollout was running) goes out now."""
    try:
        return bundle_publish_revocations(actor=None, note="revoked keys not yet in the fleet's bundle")
    except ValidationError as exc:
        log.info("revocations sync deferred: %s", exc)
        return None


# --- publish ---------------------------------------------------------------------------------------


def _queue_rollout(rollout: Rollout) -> None:
    transaction.on_commit(lambda: signals.rollout_created.send(sender=Rollout, rollout_id=rollout.pk))


class StalePreview(ValidationError):
    """The diff a user reviewed no longer describes what publishing would change."""


@transaction.atomic
def bundle_publish(
    *,
    actor: Any,
    note: str = "",
    pool: str = "",
    rollout: bool = True,
    previewed: tuple[str, int] | None = None,
) -> Bundle:
    """Compile, validate and store a new bundle version (audited), then roll it out unless told not to.

    `previewed` is (source hash, number of the latest bundle) of the diff the user saw: publishing then
    refuses when anything changed since, so what is published is exactly what was reviewed.
    Raises BundleRejected with every validation error, or ValidationError when nothing changed or the
    preview is stale."""
    number = (Bundle.objects.select_for_update().aggregate(n=Max("number"))["n"] or 0) + 1
    version = f"v{number}"
    created_at = timezone.now().isoformat(timespec="seconds")
    compiled = compile_bundle(version=version, created_at=created_at)
    if compiled.errors:
        raise BundleRejected(compiled.errors)
    latest = Bundle.objects.order_by("-number").first()
    if previewed is not None:
        seen_source, seen_base = previewed
        if (latest.number if latest else 0) != seen_base:
            raise StalePreview(
                f"{latest.version if latest else 'A bundle'} was published since your preview, so the diff "
                "you saw is against an older bundle: press “Preview changes” again, check the new diff, "
                "then publish."
            )
        if compiled.source_hash != seen_source:
            raise StalePreview(
                "Something changed since your preview (a deployment, policy, key, budget state or running "
                "experiment): press “Preview changes” again, check the new diff, then publish."
            )
    if latest is not None and latest.source_hash == compiled.source_hash:
        raise ValidationError(
            f"Nothing changed since {latest.version}: edit a deployment, policy or key first "
            f"(or roll {latest.version} out again from its page)."
        )
    bundle = Bundle.objects.create(
        number=number,
        version=version,
        content_hash=compiled.content_hash,
        source_hash=compiled.source_hash,
        document=compiled.document,
        config_yaml=compiled.config_yaml,
        note=note,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    audit_record(
        actor=actor,
        action=AuditAction.PUBLISH,
        obj=bundle,
        after={"version": version, "content_hash": bundle.content_hash},
        note=note,
    )
    if rollout:
        rollout_start(actor=actor, bundle=bundle, pool=pool, note=note, audit=False)
    return bundle


# --- rollouts ---------------------------------------------------------------------------------------


def _pool_q(pool: str) -> Q:
    return Q() if not pool else Q(pool=pool)


@transaction.atomic
def rollout_start(
    *,
    actor: Any,
    bundle: Bundle,
    pool: str = "",
    note: str = "",
    kind: str = RolloutKind.PUBLISH,
    canary_window_s: float | None = None,
    audit: bool = True,
) -> Rollout:
    """Create a rollout of `bundle` to the active proxies of `pool` (all when empty) and queue it."""
    running = Rollout.objects.filter(status__in=RUNNING_STATUSES)
    if pool:
        running = running.filter(Q(pool="") | Q(pool=pool))
    busy = running.select_related("bundle").first()
    if busy is not None:
        raise ValidationError(
            f"The rollout of {busy.bundle.version} is still running: wait for it to finish, then try again."
        )
    proxies = list(Proxy.objects.filter(_pool_q(pool), is_active=True).order_by("name"))
    window = settings.FLEET_CANARY_WINDOW_S if canary_window_s is None else canary_window_s
    rollout = Rollout.objects.create(
        bundle=bundle,
        previous_bundle=pool_current_bundle(pool),
        kind=kind,
        pool=pool,
        note=note,
        canary_window_s=Decimal(str(window)),
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    canaries = [p for p in proxies if p.is_canary]
    if kind == RolloutKind.PUBLISH and not canaries and len(proxies) > 1:
        canaries = proxies[:1]  # no proxy flagged: the first one goes first
    if kind != RolloutKind.PUBLISH:
        canaries = []  # going back to a known bundle should not wait on a canary
    RolloutTarget.objects.bulk_create(
        RolloutTarget(rollout=rollout, proxy=p, is_canary=p in canaries) for p in proxies
    )
    if audit:
        audit_record(
            actor=actor,
            action=AuditAction.ROLLBACK if kind == RolloutKind.ROLLBACK else AuditAction.PUBLISH,
            obj=rollout,
            after={"bundle": bundle.version, "pool": pool or "all", "kind": kind},
            note=note,
            object_type="routing.Rollout",
        )
    _queue_rollout(rollout)
    return rollout


def rollout_rollback(*, actor: Any, bundle: Bundle, pool: str = "", note: str = "") -> Rollout:
    """Roll the fleet (or one pool) back to an earlier bundle version: every proxy at once."""
    return rollout_start(
        actor=actor,
        bundle=bundle,
        pool=pool,
        note=note or f"roll back to {bundle.version}",
        kind=RolloutKind.ROLLBACK,
    )


@dataclass(frozen=True)
class PushResult:
    status: str  # a TargetStatus value
    attempts: int
    error: str = ""


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would carry the proxy's token to wherever it points: answer with the 3xx instead."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_RefuseRedirects)


def _http(method: str, url: str, token: str, body: bytes | None, timeout: float) -> tuple[int, Any, str]:
    problem = proxy_base_url_problem(url)
    if problem:  # the one place a proxy token leaves the control plane
        return 0, None, f"base_url: {problem}"
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        request.add_header("Content-Type", "application/json; charset=utf-8")
    try:
        with _OPENER.open(request, timeout=timeout) as response:  # registered proxy URL, redirects refused
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        raw = exc.read() if exc.fp is not None else b""
        status = exc.code
    except (OSError, ValueError) as exc:
        return 0, None, f"{type(exc).__name__}: {exc}"
    try:
        return status, json.loads(raw) if raw else None, ""
    except ValueError:
        return status, raw.decode("utf-8", "replace")[:300], ""


def push_bundle(
    *,
    base_url: str,
    token: str | None,
    body: bytes,
    expected_hash: str,
    attempts: int,
    backoff_s: float,
    timeout_s: float,
) -> PushResult:
    """PUT the bundle to one proxy, retrying connection failures and 5xx with exponential backoff."""
    if not token:
        return PushResult(
            TargetStatus.REJECTED,
            0,
            "no usable push credential (SECRET_KEY changed?): rotate the proxy's token",
        )
    problem = proxy_base_url_problem(base_url)
    if problem:  # registered before the check, or the setting changed since: the token stays home
        return PushResult(TargetStatus.REJECTED, 0, f"base_url: {problem}")
    url = base_url.rstrip("/") + PUSH_PATH
    error = ""
    for attempt in range(1, attempts + 1):
        status, reply, failure = _http("PUT", url, token, body, timeout_s)
        if status == 200:
            applied = reply.get("applied_hash") if isinstance(reply, dict) else None
            if applied == expected_hash:
                return PushResult(TargetStatus.APPLIED, attempt)
            return PushResult(
                TargetStatus.REJECTED, attempt, f"proxy reports applied hash {applied!r}, not ours"
            )
        if status == 422:
            errors = reply.get("errors") if isinstance(reply, dict) else None
            return PushResult(
                TargetStatus.REJECTED, attempt, "; ".join(map(str, errors or [str(reply)]))[:2000]
            )
        if status in (400, 401, 403):
            return PushResult(TargetStatus.REJECTED, attempt, f"HTTP {status}: {reply}"[:2000])
        error = failure or f"HTTP {status}: {reply}"[:500]
        if attempt < attempts:
            time.sleep(backoff_s * (2 ** (attempt - 1)))
    return PushResult(TargetStatus.UNREACHABLE, attempts, error)


def _push_targets(rollout: Rollout, targets: list[RolloutTarget], bundle: Bundle) -> dict[int, PushResult]:
    """Push to every target in parallel threads; each result is written as soon as it arrives."""
    if not targets:
        return {}
    body = canonical_json(bundle_signed_document(bundle.document))
    now = timezone.now()
    RolloutTarget.objects.filter(pk__in=[t.pk for t in targets]).update(
        status=TargetStatus.PUSHING, started_at=now, error=""
    )
    attempts = int(settings.FLEET_PUSH_ATTEMPTS)
    backoff = float(settings.FLEET_PUSH_BACKOFF_S)
    timeout = float(settings.FLEET_PUSH_TIMEOUT_S)
    results: dict[int, PushResult] = {}
    with ThreadPoolExecutor(max_workers=min(16, len(targets)), thread_name_prefix="bundle-push") as pool:
        futures = {
            pool.submit(
                push_bundle,
                base_url=t.proxy.base_url,
                token=decrypt_token(t.proxy.push_credential),
                body=body,
                expected_hash=bundle.content_hash,
                attempts=attempts,
                backoff_s=backoff,
                timeout_s=timeout,
            ): t
            for t in targets
        }
        for future in as_completed(futures):  # the database is written from this thread only
            target = futures[future]
            result = future.result()
            results[target.pk] = result
            RolloutTarget.objects.filter(pk=target.pk).update(
                status=result.status, attempts=result.attempts, error=result.error, finished_at=timezone.now()
            )
            if result.status == TargetStatus.APPLIED:
                Proxy.objects.filter(pk=target.proxy_id).update(
                    applied_version=bundle.version, applied_hash=bundle.content_hash
                )
    return results


def _canary_stays_healthy(targets: list[RolloutTarget], bundle: Bundle, window_s: float) -> str:
    """Watch the canaries for `window_s`: each must keep answering with the new bundle applied. "" when fine."""
    deadline = time.monotonic() + window_s
    timeout = min(2.0, float(settings.FLEET_PUSH_TIMEOUT_S))
    misses = dict.fromkeys((t.pk for t in targets), 0)
    while True:
        for target in targets:
            token = decrypt_token(target.proxy.push_credential) or ""
            status, reply, failure = _http(
                "GET", target.proxy.base_url.rstrip("/") + STATUS_PATH, token, None, timeout
            )
            applied = reply.get("applied_hash") if isinstance(reply, dict) else None
            if status == 200 and applied == bundle.content_hash:
                misses[target.pk] = 0
                continue
            if status == 200:
                return f"canary {target.proxy.name} switched away from {bundle.version} (now {applied!r})"
            misses[target.pk] += 1
            if misses[target.pk] >= 2:
                return f"canary {target.proxy.name} stopped answering after applying: {failure or f'HTTP {status}'}"
        if time.monotonic() >= deadline:
            return ""
        time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))


def _finish(rollout: Rollout, status: str, error: str = "") -> None:
    Rollout.objects.filter(pk=rollout.pk).update(status=status, error=error, finished_at=timezone.now())


def _roll_back_canary(
    rollout: Rollout, canaries: list[RolloutTarget], others: list[RolloutTarget], reason: str
) -> None:
    previous = rollout.previous_bundle
    Proxy.objects.filter(pk__in=[t.proxy_id for t in canaries]).update(target_bundle=previous)
    RolloutTarget.objects.filter(pk__in=[t.pk for t in others]).update(
        status=TargetStatus.SKIPPED, error=f"not pushed: {reason}", finished_at=timezone.now()
    )
    if previous is not None:
        reverted = _push_targets(rollout, canaries, previous)
        for target in canaries:
            result = reverted[target.pk]
            if result.status == TargetStatus.APPLIED:
                RolloutTarget.objects.filter(pk=target.pk).update(
                    status=TargetStatus.ROLLED_BACK, error=f"{reason}; back on {previous.version}"
                )
            else:
                RolloutTarget.objects.filter(pk=target.pk).update(
                    error=f"{reason}; re-pushing {previous.version} failed too ({result.error}): it heals on its next pull"
                )
    with transaction.atomic():
        _finish(rollout, RolloutStatus.ROLLED_BACK, reason)
        audit_record(
            actor=None,
            action=AuditAction.ROLLBACK,
            obj=rollout,
            after={"bundle": previous.version if previous else None},
            note=f"automatic rollback of {rollout.bundle.version}: {reason}",
            object_type="routing.Rollout",
        )


def rollout_execute(*, rollout_id: int) -> None:
    """Run one rollout to its end; safe to call twice (only the caller that claims it works)."""
    claimed = Rollout.objects.filter(pk=rollout_id, status=RolloutStatus.PENDING).update(
        status=RolloutStatus.CANARY, started_at=timezone.now()
    )
    if claimed != 1:
        return
    rollout = Rollout.objects.select_related("bundle", "previous_bundle").get(pk=rollout_id)
    bundle = rollout.bundle
    targets = list(rollout.targets.select_related("proxy"))
    canaries = [t for t in targets if t.is_canary]
    others = [t for t in targets if not t.is_canary]
    try:
        if canaries:
            Proxy.objects.filter(pk__in=[t.proxy_id for t in canaries]).update(target_bundle=bundle)
            results = _push_targets(rollout, canaries, bundle)
            failed = [t for t in canaries if results[t.pk].status != TargetStatus.APPLIED]
            if failed:
                first = results[failed[0].pk]
                reason = (
                    f"canary {failed[0].proxy.name} {TargetStatus(first.status).label.lower()}: {first.error}"
                )
                _roll_back_canary(rollout, canaries, others, reason)
                return
            reason = _canary_stays_healthy(canaries, bundle, float(rollout.canary_window_s))
            if reason:
                RolloutTarget.objects.filter(pk__in=[t.pk for t in canaries]).update(error=reason)
                _roll_back_canary(rollout, canaries, others, reason)
                return
        Rollout.objects.filter(pk=rollout.pk).update(status=RolloutStatus.ROLLING)
        # set the target first: a proxy the push misses picks the bundle up on its next pull
        Proxy.objects.filter(pk__in=[t.proxy_id for t in others]).update(target_bundle=bundle)
        results = _push_targets(rollout, others, bundle)
    except Exception as exc:
        log.exception("rollout %s crashed", rollout.pk)
        _finish(rollout, RolloutStatus.FAILED, f"{type(exc).__name__}: {exc}")
        raise
    missed = [t for t in others if results[t.pk].status != TargetStatus.APPLIED]
    if missed:
        names = ", ".join(t.proxy.name for t in missed)
        _finish(
            rollout, RolloutStatus.PARTIAL, f"not applied on {names}: they pick it up when they next pull"
        )
    else:
        _finish(rollout, RolloutStatus.SUCCEEDED)


def rollout_reap(*, older_than_s: float = 600) -> int:
    """Mark rollouts whose worker vanished as failed, so the next publish is not blocked forever."""
    cutoff = timezone.now() - dt.timedelta(seconds=older_than_s)
    return Rollout.objects.filter(status__in=RUNNING_STATUSES, created_at__lt=cutoff).update(
        status=RolloutStatus.FAILED, error="the worker running it went away", finished_at=timezone.now()
    )
