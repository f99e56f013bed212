"""The routing bundle: the immutable, content-hashed document the control plane publishes to proxies.

One JSON document holds the LiteLLM topology (`deployments`) and the hot policy (per-feature
policies, budget states, experiments, feature-key hashes, shipping settings). The control plane's
compiler writes it, the proxy plugin validates and applies it. `validate_bundle` returns every
problem as "<json path>: <what is wrong> (<how to fix it>)"; `Bundle.from_json` raises
`BundleError` with that list. `example_bundle()` is the documented reference shape, also
shipped as `bundle_example.json`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from routing.engine.adjustment import AdjustmentError, ScoreAdjustment
from routing.engine.scorer import shipped_versions

BUNDLE_SCHEMA = 1
DEFAULT_POLICY = "default"
DEFAULT_SLM_TIMEOUT_MS = 2000
MAX_THRESHOLD = 1.01  # scores live in [0, 1]: 1.01 sends everything to the small model
TIERS = ("small", "frontier")
BUDGET_STATES = ("ok", "over")
OVER_BUDGET_ACTIONS = ("block", "degrade")
STICKY_BY = ("end_user", "request")
SPOOL_FULL_POLICIES = ("drop_oldest", "drop_newest")
RULE_NAMES = ("tools", "images", "structured_output", "context")
EXAMPLE_PATH = Path(__file__).with_name("bundle_example.json")
# A bundle without `scorer_weights` was written for complexity-v1's score scale (its thresholds
# assume it), so it keeps that scorer; a bundle opts into newer weights by naming them.
UNPINNED_SCORER_WEIGHTS = "complexity-v1"

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_ENV_REF = re.compile(r"^os\.environ/[A-Za-z_][A-Za-z0-9_]*$")
_TOP_LEVEL = {
    "schema",
    "version",
    "content_hash",
    "created_at",
    "deployments",
    "policies",
    "budgets",
    "experiments",
    "keys",
    "attribution",
    "shipping",
    "signature",  # Ed25519 over the content hash (routing.engine.signing); not part of the hash
    "scorer_weights",
}


class BundleError(ValueError):
    """A bundle that failed validation; `errors` lists every problem found."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("invalid bundle: " + "; ".join(errors[:5]) + (" …" if len(errors) > 5 else ""))


def canonical_json(doc: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the bytes both sides hash."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def content_hash(doc: dict[str, Any]) -> str:
    """sha256 hex of the canonical JSON of the bundle without its `content_hash` and `signature` fields."""
    body = {k: v for k, v in doc.items() if k not in ("content_hash", "signature")}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def with_content_hash(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of `doc` with `content_hash` set to its true value (what the compiler does last)."""
    out = copy.deepcopy(doc)
    out["content_hash"] = content_hash(out)
    return out


# ---------------------------------------------------------------------------------------------
# Typed view


@dataclass(frozen=True)
class Deployment:
    """One LiteLLM deployment: a model behind a model group."""

    model_group: str
    model: str
    tier: str
    api_base: str | None = None
    api_key: str | None = None  # only an `os.environ/NAME` reference
    context_window: int = 8192
    supports_tools: bool = False
    supports_vision: bool = False
    supports_structured_output: bool = False
    supports_logprobs: bool = False
    timeout_s: float | None = None
    input_cost_per_token: Decimal | None = None
    output_cost_per_token: Decimal | None = None


@dataclass(frozen=True)
class RoutingRules:
    """Hard rules: request shapes the small model cannot serve go to the frontier model."""

    tools: bool = True
    images: bool = True
    structured_output: bool = True
    context: bool = True
    context_margin_tokens: int = 256  # room left for the answer when checking the SLM's window


@dataclass(frozen=True)
class RoutingPolicy:
    """How one feature's traffic is split between its small and frontier model groups."""

    small_model: str
    frontier_model: str
    threshold: float | None = 0.5
    target_small_share: float | None = None
    slm_timeout_ms: int = DEFAULT_SLM_TIMEOUT_MS
    confidence_floor: float | None = None
    over_budget: str = "block"
    rules: RoutingRules = field(default_factory=RoutingRules)
    scorer_adjustment: ScoreAdjustment | None = (
        None  # the feature's own change of the score (feature policies only)
    )


@dataclass(frozen=True)
class BudgetState:
    """The control plane's verdict on one feature's budget for the current period."""

    team: str
    feature: str
    state: str
    spend_usd: Decimal
    limit_usd: Decimal
    period: str = ""
    action: str = ""  # block or degrade; empty: the feature policy's over_budget decides


@dataclass(frozen=True)
class ExperimentArm:
    name: str
    threshold: float
    weight: int


@dataclass(frozen=True)
class Experiment:
    """A running A/B threshold experiment on one feature."""

    id: str
    feature: str
    sticky_by: str
    arms: tuple[ExperimentArm, ...]


@dataclass(frozen=True)
class FeatureKey:
    """A feature key as the bundle carries it: only its hash."""

    key_hash: str
    team: str
    feature: str
    expires_at: datetime | None
    revoked: bool
    features: tuple[str, ...] = ()  # other features this key may attribute calls to
    feature_codes: tuple[tuple[str, str], ...] = ()  # (slug, public UUID) of each of those features
    team_code: str = (
        ""  # public UUIDs: spend records name team and feature by these, which renames never change
    )
    feature_code: str = ""


@dataclass(frozen=True)
class Attribution:
    """Whether clients may name the feature themselves (header or request metadata)."""

    header: bool = False
    metadata: bool = False


@dataclass(frozen=True)
class ShippingSettings:
    batch_size: int = 200
    interval_ms: int = 1000
    max_spool_records: int = 100_000
    spool_full_policy: str = "drop_oldest"


@dataclass(frozen=True)
class BreakerSettings:
    """The small model's circuit breaker (routing/proxy/breaker.py); set on the default policy only.

    One breaker guards each small model group for every feature that uses it, so its settings
    cannot differ per feature."""

    window_s: float = 30.0  # sliding window of SLM attempts the failure share is taken over
    failure_share: float = 0.5  # opens at this share of failed attempts in the window...
    min_attempts: int = 20  # ...once the window holds at least this many attempts
    consecutive_failures: int = 5  # opens on this many hard failures in a row (timeouts, refused)
    cool_off_s: float = 10.0  # first wait before probing an open breaker
    max_cool_off_s: float = 60.0  # the wait doubles after each failed probe, up to this
    probe_one_in: int = 10  # half-open: one call in this many tries the SLM (one at a time)
    close_after: int = 3  # successful probes in a row that close the breaker


# field -> (low, high, whole number, hint) for validation and the control plane's form
BREAKER_LIMITS: dict[str, tuple[float, float, bool, str]] = {
    "window_s": (1, 3600, False, "seconds of SLM attempts the failure share is taken over"),
    "failure_share": (0.05, 1.0, False, "share of failed attempts that opens the breaker"),
    "min_attempts": (1, 100_000, True, "attempts in the window before the share counts"),
    "consecutive_failures": (1, 1000, True, "hard failures in a row that open the breaker"),
    "cool_off_s": (0.1, 3600, False, "seconds before the first probe"),
    "max_cool_off_s": (0.1, 86_400, False, "longest wait between probes"),
    "probe_one_in": (1, 100_000, True, "one call in this many probes a half-open breaker"),
    "close_after": (1, 1000, True, "successful probes that close the breaker"),
}


@dataclass(frozen=True)
class Bundle:
    """A validated bundle with the lookups the hot path needs precomputed."""

    version: str
    content_hash: str
    created_at: str | None
    deployments: tuple[Deployment, ...]
    policies: dict[str, RoutingPolicy]
    budgets: dict[tuple[str, str], BudgetState]
    experiments: dict[str, Experiment]
    keys: dict[str, FeatureKey]
    attribution: Attribution
    shipping: ShippingSettings
    document: dict[str, Any]
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    topology: str = ""  # hash of the deployments alone, precomputed for the hot path
    scorer_weights: str = "complexity-v1"  # the scorer version the bundle's thresholds are meant for
    groups: dict[str, tuple[Deployment, ...]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, doc: Any) -> Bundle:
        errors = validate_bundle(doc)
        if errors:
            raise BundleError(errors)
        return _build(doc)

    @classmethod
    def from_file(cls, path: str | Path) -> Bundle:
        with open(path, encoding="utf-8") as bundle_file:
            return cls.from_json(json.load(bundle_file))

    def policy_for(self, feature: str) -> RoutingPolicy:
        return self.policies.get(feature) or self.policies[DEFAULT_POLICY]

    def budget_for(self, team: str, feature: str) -> BudgetState | None:
        return self.budgets.get((team, feature))

    def deployments_in(self, model_group: str) -> tuple[Deployment, ...]:
        return self.groups.get(model_group, ())

    def topology_hash(self) -> str:
        """Hash of the deployments alone: a change here is a model-topology change."""
        return (
            self.topology or hashlib.sha256(canonical_json(self.document.get("deployments", []))).hexdigest()
        )


# ---------------------------------------------------------------------------------------------
# Validation


class _Check:
    """Collects path-named errors while reading a JSON document."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def err(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def obj(self, value: Any, path: str, allowed: set[str] | None = None) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.err(path, f"must be a JSON object, got {_kind(value)}")
            return None
        if allowed is not None:
            for key in sorted(set(value) - allowed):
                self.err(
                    f"{path}.{key}", f"is not a known field (remove it; known: {', '.join(sorted(allowed))})"
                )
        return value

    def slug(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str) or not _SLUG.match(value):
            self.err(path, f"must be a lowercase slug (a-z, 0-9, '-', '_', at most 64), got {value!r}")
            return None
        return value

    def text(self, value: Any, path: str, *, max_len: int = 200) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.err(path, f"must be a non-empty string, got {value!r}")
            return None
        if len(value) > max_len:
            self.err(path, f"is {len(value)} characters long (at most {max_len})")
            return None
        return value

    def boolean(self, value: Any, path: str) -> None:
        if not isinstance(value, bool):
            self.err(path, f"must be true or false, got {value!r}")

    def integer(self, value: Any, path: str, low: int, high: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.err(path, f"must be a whole number between {low} and {high}, got {value!r}")
        elif not low <= value <= high:
            self.err(path, f"must be between {low} and {high}, got {value}")

    def number(self, value: Any, path: str, low: float, high: float, hint: str = "") -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.err(path, f"must be a number between {low} and {high}, got {value!r}")
        elif not low <= value <= high:
            self.err(path, f"must be between {low} and {high}, got {value}" + (f" ({hint})" if hint else ""))

    def money(self, value: Any, path: str) -> None:
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.err(path, f'must be a decimal string in USD such as "12.50" (not a float), got {value!r}')
            return
        try:
            amount = Decimal(str(value))
        except InvalidOperation:
            self.err(path, f"is not a decimal number: {value!r}")
            return
        if not amount.is_finite() or amount < 0:
            self.err(path, f"must be a non-negative amount, got {value!r}")

    def moment(self, value: Any, path: str) -> None:
        if value is None:
            return
        try:
            moment = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            self.err(
                path,
                f"must be null or an ISO 8601 time with a UTC offset such as 2026-12-31T00:00:00+00:00, got {value!r}",
            )


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )


_DEPLOYMENT_FIELDS = {
    "model_group",
    "model",
    "tier",
    "api_base",
    "api_key",
    "context_window",
    "supports_tools",
    "supports_vision",
    "supports_structured_output",
    "supports_logprobs",
    "timeout_s",
    "input_cost_per_token",
    "output_cost_per_token",
}
_POLICY_FIELDS = {
    "small_model",
    "frontier_model",
    "threshold",
    "target_small_share",
    "slm_timeout_ms",
    "confidence_floor",
    "over_budget",
    "rules",
    "breaker",
    "scorer_adjustment",
}
_RULE_FIELDS = {*RULE_NAMES, "context_margin_tokens"}


def _check_deployments(c: _Check, value: Any) -> dict[str, set[str]]:
    """Validate deployments; return model group -> tiers seen."""
    groups: dict[str, set[str]] = {}
    if not isinstance(value, list) or not value:
        c.err(
            "$.deployments", "must be a non-empty list of deployments (at least one small and one frontier)"
        )
        return groups
    for i, raw in enumerate(value):
        path = f"$.deployments[{i}]"
        dep = c.obj(raw, path, _DEPLOYMENT_FIELDS)
        if dep is None:
            continue
        group = c.text(dep.get("model_group"), f"{path}.model_group", max_len=100)
        c.text(dep.get("model"), f"{path}.model", max_len=200)
        tier = dep.get("tier")
        if tier not in TIERS:
            c.err(f"{path}.tier", f"must be 'small' or 'frontier', got {tier!r}")
        elif group:
            groups.setdefault(group, set()).add(tier)
        if dep.get("api_base") is not None:
            base = dep["api_base"]
            if not isinstance(base, str) or not base.startswith(("http://", "https://", "os.environ/")):
                c.err(
                    f"{path}.api_base",
                    f"must be an http(s) URL or an os.environ/NAME reference, got {base!r}",
                )
        if dep.get("api_key") is not None and (
            not isinstance(dep["api_key"], str) or not _ENV_REF.match(dep["api_key"])
        ):
            c.err(
                f"{path}.api_key",
                "must be an os.environ/NAME reference: provider secrets never go into a bundle",
            )
        if "context_window" in dep:
            c.integer(dep["context_window"], f"{path}.context_window", 1, 10_000_000)
        for flag in ("supports_tools", "supports_vision", "supports_structured_output", "supports_logprobs"):
            if flag in dep:
                c.boolean(dep[flag], f"{path}.{flag}")
        if dep.get("timeout_s") is not None:
            c.number(dep["timeout_s"], f"{path}.timeout_s", 0.05, 3600)
        for price in ("input_cost_per_token", "output_cost_per_token"):
            if dep.get(price) is not None:
                c.money(dep[price], f"{path}.{price}")
    for group, tiers in groups.items():
        if len(tiers) > 1:
            c.err(
                "$.deployments",
                f"model group {group!r} mixes tiers {sorted(tiers)}: give each group one tier",
            )
    return groups


def _check_policy(c: _Check, raw: Any, path: str, groups: dict[str, set[str]], *, full: bool) -> None:
    policy = c.obj(raw, path, _POLICY_FIELDS)
    if policy is None:
        return
    for name, tier in (("small_model", "small"), ("frontier_model", "frontier")):
        if name not in policy:
            if full:
                c.err(f"{path}.{name}", f"is required in the default policy: name a {tier} model group")
            continue
        group = c.text(policy[name], f"{path}.{name}", max_len=100)
        if group is None:
            continue
        if group not in groups:
            known = ", ".join(sorted(groups)) or "none"
            c.err(
                f"{path}.{name}",
                f"names model group {group!r} that no deployment serves (known groups: {known})",
            )
        elif tier not in groups[group]:
            c.err(f"{path}.{name}", f"names model group {group!r} whose deployments are not {tier}-tier")
    has_threshold = policy.get("threshold") is not None
    has_share = policy.get("target_small_share") is not None
    if has_threshold and has_share:
        c.err(
            path,
            "sets both threshold and target_small_share: keep one (a target share replaces the threshold)",
        )
    if full and not has_threshold and not has_share:
        c.err(f"{path}.threshold", "is required in the default policy (or set target_small_share)")
    if has_threshold:
        c.number(
            policy["threshold"],
            f"{path}.threshold",
            0.0,
            MAX_THRESHOLD,
            "0.0 sends all to frontier, 1.01 all to small",
        )
    if has_share:
        c.number(
            policy["target_small_share"],
            f"{path}.target_small_share",
            0.0,
            1.0,
            "share of calls for the small model",
        )
    if "slm_timeout_ms" in policy:
        c.integer(policy["slm_timeout_ms"], f"{path}.slm_timeout_ms", 50, 120_000)
    if policy.get("confidence_floor") is not None:
        c.number(
            policy["confidence_floor"],
            f"{path}.confidence_floor",
            0.0,
            1.0,
            "geometric-mean token probability",
        )
    if "over_budget" in policy and policy["over_budget"] not in OVER_BUDGET_ACTIONS:
        c.err(f"{path}.over_budget", f"must be 'block' or 'degrade', got {policy['over_budget']!r}")
    if "breaker" in policy:
        _check_breaker(c, policy["breaker"], f"{path}.breaker", full=full)
    if policy.get("scorer_adjustment") is not None:
        if full:
            c.err(
                f"{path}.scorer_adjustment",
                "is set on the default policy: an adjustment is fitted from one feature's outcomes, "
                "so set it on that feature's policy",
            )
        else:
            try:
                ScoreAdjustment.from_dict(policy["scorer_adjustment"], f"{path}.scorer_adjustment")
            except AdjustmentError as refused:
                c.errors.append(str(refused))
    if "rules" in policy:
        rules = c.obj(policy["rules"], f"{path}.rules", _RULE_FIELDS)
        if rules is not None:
            for rule in RULE_NAMES:
                if rule in rules:
                    c.boolean(rules[rule], f"{path}.rules.{rule}")
            if "context_margin_tokens" in rules:
                c.integer(rules["context_margin_tokens"], f"{path}.rules.context_margin_tokens", 0, 1_000_000)


def _check_breaker(c: _Check, raw: Any, path: str, *, full: bool) -> None:
    if not full:
        c.err(
            path,
            "is set on a feature policy: the breaker guards the small model for every feature, "
            "so set it on the default policy only",
        )
        return
    breaker = c.obj(raw, path, set(BREAKER_LIMITS))
    if breaker is None:
        return
    for name, (low, high, whole, hint) in BREAKER_LIMITS.items():
        if name not in breaker:
            continue
        if whole:
            c.integer(breaker[name], f"{path}.{name}", int(low), int(high))
        else:
            c.number(breaker[name], f"{path}.{name}", low, high, hint)
    cool_off = breaker.get("cool_off_s", BreakerSettings.cool_off_s)
    longest = breaker.get("max_cool_off_s", BreakerSettings.max_cool_off_s)
    if isinstance(cool_off, int | float) and isinstance(longest, int | float) and longest < cool_off:
        c.err(
            f"{path}.max_cool_off_s", f"is shorter than cool_off_s ({cool_off}): make it at least that long"
        )


def validate_bundle(doc: Any) -> list[str]:
    """Every problem with `doc`, each naming its JSON path and the fix; empty when valid."""
    c = _Check()
    bundle = c.obj(doc, "$", _TOP_LEVEL)
    if bundle is None:
        return c.errors
    if bundle.get("schema") != BUNDLE_SCHEMA:
        c.err(
            "$.schema",
            f"must be {BUNDLE_SCHEMA} (the bundle schema this plugin reads), got {bundle.get('schema')!r}",
        )
    c.text(bundle.get("version"), "$.version", max_len=80)
    claimed = bundle.get("content_hash")
    if not isinstance(claimed, str) or not _HEX64.match(claimed):
        c.err(
            "$.content_hash",
            f"must be the sha256 hex of the bundle without this field; set it to {content_hash(bundle)}",
        )
    elif claimed != content_hash(bundle):
        c.err(
            "$.content_hash",
            f"does not match the content (edited after hashing?); expected {content_hash(bundle)}",
        )
    if bundle.get("created_at") is not None:
        c.moment(bundle["created_at"], "$.created_at")
    if "signature" in bundle:
        c.text(bundle["signature"], "$.signature", max_len=200)
    if bundle.get("scorer_weights") is not None and bundle["scorer_weights"] not in shipped_versions():
        c.err(
            "$.scorer_weights",
            f"must be a shipped scorer weights version ({', '.join(shipped_versions())}) or left out "
            f"for the default, got {bundle['scorer_weights']!r}",
        )

    groups = _check_deployments(c, bundle.get("deployments"))

    policies = c.obj(bundle.get("policies"), "$.policies")
    if policies is not None:
        if DEFAULT_POLICY not in policies:
            c.err("$.policies.default", "is required: the policy for features without their own override")
        for name, raw in policies.items():
            if name != DEFAULT_POLICY and not _SLUG.match(str(name)):
                c.err(f"$.policies.{name}", "must be keyed by a feature slug (lowercase a-z, 0-9, '-', '_')")
                continue
            _check_policy(c, raw, f"$.policies.{name}", groups, full=name == DEFAULT_POLICY)

    budgets = bundle.get("budgets", [])
    if not isinstance(budgets, list):
        c.err("$.budgets", "must be a list of budget states ([] when none)")
        budgets = []
    seen_budgets: set[tuple[Any, Any]] = set()
    for i, raw in enumerate(budgets):
        path = f"$.budgets[{i}]"
        budget = c.obj(raw, path, {"team", "feature", "state", "spend_usd", "limit_usd", "period", "action"})
        if budget is None:
            continue
        team = c.slug(budget.get("team"), f"{path}.team")
        feature = c.slug(budget.get("feature"), f"{path}.feature")
        if budget.get("action", "") not in ("", *OVER_BUDGET_ACTIONS):
            c.err(
                f"{path}.action", f"must be 'block' or 'degrade' (or left out), got {budget.get('action')!r}"
            )
        if budget.get("state") not in BUDGET_STATES:
            c.err(f"{path}.state", f"must be 'ok' or 'over', got {budget.get('state')!r}")
        c.money(budget.get("spend_usd"), f"{path}.spend_usd")
        c.money(budget.get("limit_usd"), f"{path}.limit_usd")
        if (team, feature) in seen_budgets:
            c.err(path, f"repeats the budget of {team}/{feature}: keep one entry per team and feature")
        seen_budgets.add((team, feature))

    experiments = bundle.get("experiments", [])
    if not isinstance(experiments, list):
        c.err("$.experiments", "must be a list of running experiments ([] when none)")
        experiments = []
    features_in_experiments: set[str] = set()
    for i, raw in enumerate(experiments):
        path = f"$.experiments[{i}]"
        exp = c.obj(raw, path, {"id", "feature", "sticky_by", "arms"})
        if exp is None:
            continue
        c.slug(exp.get("id"), f"{path}.id")
        feature = c.slug(exp.get("feature"), f"{path}.feature")
        if feature in features_in_experiments:
            c.err(
                f"{path}.feature",
                "already has a running experiment: run one experiment per feature at a time",
            )
        if feature:
            features_in_experiments.add(feature)
        if exp.get("sticky_by", "end_user") not in STICKY_BY:
            c.err(f"{path}.sticky_by", f"must be 'end_user' or 'request', got {exp.get('sticky_by')!r}")
        arms = exp.get("arms")
        if not isinstance(arms, list) or len(arms) < 2:
            c.err(f"{path}.arms", "must list at least two arms, each {name, threshold, weight}")
            continue
        names: set[Any] = set()
        for j, raw_arm in enumerate(arms):
            arm_path = f"{path}.arms[{j}]"
            arm = c.obj(raw_arm, arm_path, {"name", "threshold", "weight"})
            if arm is None:
                continue
            name = c.slug(arm.get("name"), f"{arm_path}.name")
            if name in names:
                c.err(f"{arm_path}.name", f"repeats arm name {name!r}: arm names must be unique")
            names.add(name)
            c.number(arm.get("threshold"), f"{arm_path}.threshold", 0.0, MAX_THRESHOLD)
            c.integer(arm.get("weight"), f"{arm_path}.weight", 1, 10_000)

    keys = bundle.get("keys", [])
    if not isinstance(keys, list):
        c.err("$.keys", "must be a list of feature keys ([] when none)")
        keys = []
    seen_hashes: set[str] = set()
    for i, raw in enumerate(keys):
        path = f"$.keys[{i}]"
        key = c.obj(
            raw,
            path,
            {
                "key_hash",
                "team",
                "feature",
                "expires_at",
                "revoked",
                "features",
                "team_code",
                "feature_code",
                "feature_codes",
            },
        )
        if key is None:
            continue
        key_hash = key.get("key_hash")
        if not isinstance(key_hash, str) or not _HEX64.match(key_hash):
            c.err(
                f"{path}.key_hash",
                "must be the lowercase sha256 hex of the key (signing.token_hash), never the key",
            )
        elif key_hash in seen_hashes:
            c.err(f"{path}.key_hash", "repeats another key's hash: each key appears once")
        else:
            seen_hashes.add(key_hash)
        c.slug(key.get("team"), f"{path}.team")
        c.slug(key.get("feature"), f"{path}.feature")
        c.moment(key.get("expires_at"), f"{path}.expires_at")
        c.boolean(key.get("revoked", False), f"{path}.revoked")
        for name in ("team_code", "feature_code"):
            code = key.get(name, "")
            if code != "" and (not isinstance(code, str) or not _UUID.match(code)):
                c.err(
                    f"{path}.{name}",
                    "must be the public UUID of the team or feature (lowercase, with dashes)",
                )
        extra = key.get("features", [])
        if not isinstance(extra, list):
            c.err(f"{path}.features", "must be a list of feature slugs this key may attribute calls to")
            extra = []
        else:
            for j, slug in enumerate(extra):
                c.slug(slug, f"{path}.features[{j}]")
        codes = key.get("feature_codes", {})
        if not isinstance(codes, dict):
            c.err(f"{path}.feature_codes", "must map each of the key's extra features to its public UUID")
        else:
            for slug, code in codes.items():
                if slug not in extra:
                    c.err(f"{path}.feature_codes.{slug}", "names a feature that is not in the key's features")
                elif not isinstance(code, str) or not _UUID.match(code):
                    c.err(
                        f"{path}.feature_codes.{slug}",
                        "must be the feature's public UUID (lowercase, with dashes)",
                    )
            if key.get("feature_code"):  # a key with codes carries one for every feature it may charge
                for slug in extra:
                    if isinstance(slug, str) and slug not in codes:
                        c.err(
                            f"{path}.feature_codes",
                            f"gives no code for extra feature {slug!r}: records charged to it must carry "
                            "its UUID like the key's own feature (add it)",
                        )

    if "attribution" in bundle:
        attribution = c.obj(bundle["attribution"], "$.attribution", {"header", "metadata"})
        if attribution is not None:
            for name in ("header", "metadata"):
                if name in attribution:
                    c.boolean(attribution[name], f"$.attribution.{name}")

    if "shipping" in bundle:
        shipping = c.obj(
            bundle["shipping"],
            "$.shipping",
            {"batch_size", "interval_ms", "max_spool_records", "spool_full_policy"},
        )
        if shipping is not None:
            if "batch_size" in shipping:
                c.integer(shipping["batch_size"], "$.shipping.batch_size", 1, 5000)
            if "interval_ms" in shipping:
                c.integer(shipping["interval_ms"], "$.shipping.interval_ms", 50, 600_000)
            if "max_spool_records" in shipping:
                c.integer(shipping["max_spool_records"], "$.shipping.max_spool_records", 100, 100_000_000)
            if shipping.get("spool_full_policy", "drop_oldest") not in SPOOL_FULL_POLICIES:
                c.err("$.shipping.spool_full_policy", f"must be one of {', '.join(SPOOL_FULL_POLICIES)}")
    return c.errors


# ---------------------------------------------------------------------------------------------
# Building the typed view (only called on a valid document)


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _moment(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _policy(raw: dict[str, Any]) -> RoutingPolicy:
    rules_raw = raw.get("rules", {})
    threshold = raw.get("threshold")
    return RoutingPolicy(
        small_model=raw["small_model"],
        frontier_model=raw["frontier_model"],
        threshold=float(threshold) if threshold is not None else None,
        target_small_share=raw.get("target_small_share"),
        slm_timeout_ms=int(raw.get("slm_timeout_ms", DEFAULT_SLM_TIMEOUT_MS)),
        confidence_floor=raw.get("confidence_floor"),
        over_budget=raw.get("over_budget", "block"),
        rules=RoutingRules(**rules_raw),
        scorer_adjustment=(
            ScoreAdjustment.from_dict(raw["scorer_adjustment"]) if raw.get("scorer_adjustment") else None
        ),
    )


def _merged_policy(default: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = {**default, **override}
    if "threshold" in override or "target_small_share" in override:
        # an override that picks one of the two replaces the default's choice entirely
        merged["threshold"] = override.get("threshold")
        merged["target_small_share"] = override.get("target_small_share")
    merged["rules"] = {**default.get("rules", {}), **override.get("rules", {})}
    return merged


def _build(doc: dict[str, Any]) -> Bundle:
    default_raw = doc["policies"][DEFAULT_POLICY]
    policies = {
        name: _policy(default_raw if name == DEFAULT_POLICY else _merged_policy(default_raw, raw))
        for name, raw in doc["policies"].items()
    }
    deployments = tuple(
        Deployment(
            model_group=d["model_group"],
            model=d["model"],
            tier=d["tier"],
            api_base=d.get("api_base"),
            api_key=d.get("api_key"),
            context_window=d.get("context_window", 8192),
            supports_tools=d.get("supports_tools", d["tier"] == "frontier"),
            supports_vision=d.get("supports_vision", d["tier"] == "frontier"),
            supports_structured_output=d.get("supports_structured_output", d["tier"] == "frontier"),
            supports_logprobs=d.get("supports_logprobs", False),
            timeout_s=d.get("timeout_s"),
            input_cost_per_token=_decimal(d.get("input_cost_per_token")),
            output_cost_per_token=_decimal(d.get("output_cost_per_token")),
        )
        for d in doc["deployments"]
    )
    budgets = {
        (b["team"], b["feature"]): BudgetState(
            team=b["team"],
            feature=b["feature"],
            state=b["state"],
            spend_usd=Decimal(str(b["spend_usd"])),
            limit_usd=Decimal(str(b["limit_usd"])),
            period=b.get("period", ""),
            action=b.get("action", ""),
        )
        for b in doc.get("budgets", [])
    }
    experiments = {
        e["feature"]: Experiment(
            id=e["id"],
            feature=e["feature"],
            sticky_by=e.get("sticky_by", "end_user"),
            arms=tuple(ExperimentArm(a["name"], float(a["threshold"]), int(a["weight"])) for a in e["arms"]),
        )
        for e in doc.get("experiments", [])
    }
    keys = {
        k["key_hash"]: FeatureKey(
            key_hash=k["key_hash"],
            team=k["team"],
            feature=k["feature"],
            expires_at=_moment(k.get("expires_at")),
            revoked=bool(k.get("revoked", False)),
            features=tuple(k.get("features", [])),
            feature_codes=tuple(sorted((k.get("feature_codes") or {}).items())),
            team_code=k.get("team_code", ""),
            feature_code=k.get("feature_code", ""),
        )
        for k in doc.get("keys", [])
    }
    return Bundle(
        version=doc["version"],
        content_hash=doc["content_hash"],
        created_at=doc.get("created_at"),
        deployments=deployments,
        policies=policies,
        budgets=budgets,
        experiments=experiments,
        keys=keys,
        attribution=Attribution(**doc.get("attribution", {})),
        shipping=ShippingSettings(**doc.get("shipping", {})),
        document=doc,
        breaker=BreakerSettings(**default_raw.get("breaker", {})),
        topology=hashlib.sha256(canonical_json(doc["deployments"])).hexdigest(),
        scorer_weights=doc.get("scorer_weights") or UNPINNED_SCORER_WEIGHTS,
        groups={
            group: tuple(d for d in deployments if d.model_group == group)
            for group in {d.model_group for d in deployments}
        },
    )


def example_bundle() -> dict[str, Any]:
    """The documented reference bundle (bundle_example.json) with a correct content hash."""
    with open(EXAMPLE_PATH, encoding="utf-8") as example_file:
        doc = json.load(example_file)
    doc.pop("_comment", None)
    return with_content_hash(doc)
