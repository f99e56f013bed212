"""The bundle compiler: deployments, policies, feature keys, budget states and experiments → a validated bundle.

`compile_bundle` reads the database in a fixed order and builds the document the proxy plugin
reads (`routing.engine.bundle`), so the same inputs always give the same content hash. It then
validates: the bundle schema (`validate_bundle`), references the schema cannot see (inactive or
missing deployments, budgets and experiments naming unknown features), fallback targets, and
LiteLLM's own check of each deployment (a `litellm.Router` built in-process, no network).
The rendered `config.yaml` comes from the proxy's own bootstrap (`litellm_config`).

Budget states belong to billing: they plug in through the budget-states slot of routing.providers
(billing registers it in its AppConfig.ready()). Running experiments are routing's own and read here.
The `budget_states=`/`experiments=` arguments replace either for one compile.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

import yaml

from controlplane.models import Feature, Team
from routing import providers
from routing.engine.bundle import (
    BUNDLE_SCHEMA,
    DEFAULT_POLICY,
    DEFAULT_SLM_TIMEOUT_MS,
    BreakerSettings,
    Bundle,
    canonical_json,
    content_hash,
    validate_bundle,
    with_content_hash,
)
from routing.models import (
    BREAKER_FIELDS,
    Experiment,
    ExperimentStatus,
    FeatureKey,
    ModelDeployment,
    RoutingPolicy,
)

log = logging.getLogger("finops.compiler")

PER_MILLION = Decimal(1_000_000)
RULE_FIELDS = {
    "tools": "rule_tools",
    "images": "rule_images",
    "structured_output": "rule_structured_output",
    "context": "rule_context",
}
DEFAULT_CONTEXT_MARGIN = 256


@dataclass
class CompiledBundle:
    """A compiled bundle document, its rendered LiteLLM config, and every problem found (empty: valid)."""

    document: dict[str, Any]
    config_yaml: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def content_hash(self) -> str:
        return str(self.document.get("content_hash", ""))

    @property
    def source_hash(self) -> str:
        return source_hash(self.document)


def source_hash(doc: dict[str, Any]) -> str:
    """Hash of what the bundle says, ignoring its version label and time: equal means nothing changed."""
    return content_hash({k: v for k, v in doc.items() if k not in ("version", "created_at")})


def _plain_decimal(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text


def _number(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def deployment_entry(dep: ModelDeployment) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "model_group": dep.group,
        "model": dep.litellm_model,
        "tier": dep.tier,
        "context_window": dep.context_window,
        "supports_tools": dep.supports_tools,
        "supports_vision": dep.supports_vision,
        "supports_structured_output": dep.supports_structured_output,
        "supports_logprobs": dep.supports_logprobs,
    }
    if dep.api_base:
        entry["api_base"] = dep.api_base
    if dep.api_key_env:
        entry["api_key"] = f"os.environ/{dep.api_key_env}"
    if dep.timeout_s is not None:
        entry["timeout_s"] = float(dep.timeout_s)
    if dep.input_price_per_mtok is not None:
        entry["input_cost_per_token"] = _plain_decimal(dep.input_price_per_mtok / PER_MILLION)
    if dep.output_price_per_mtok is not None:
        entry["output_cost_per_token"] = _plain_decimal(dep.output_price_per_mtok / PER_MILLION)
    return entry


def _deployment_ref(policy: RoutingPolicy, attr: str, tier: str, path: str, errors: list[str]) -> str | None:
    dep: ModelDeployment | None = getattr(policy, attr)
    if dep is None:
        return None
    if not dep.is_active:
        errors.append(
            f"{path}: {tier} deployment {dep.name!r} is inactive (activate it, or pick another deployment for {policy})"
        )
        return None
    if dep.tier != tier:
        errors.append(
            f"{path}: deployment {dep.name!r} is {dep.tier}-tier, not {tier} (pick a {tier} deployment)"
        )
        return None
    return dep.group


def policy_entry(policy: RoutingPolicy, path: str, errors: list[str]) -> dict[str, Any]:
    """The bundle form of a policy; an override carries only the fields it sets."""
    full = policy.is_default
    entry: dict[str, Any] = {}
    small = _deployment_ref(policy, "small_deployment", "small", f"{path}.small_model", errors)
    frontier = _deployment_ref(policy, "frontier_deployment", "frontier", f"{path}.frontier_model", errors)
    if small:
        entry["small_model"] = small
    if frontier:
        entry["frontier_model"] = frontier
    if policy.threshold is not None:
        entry["threshold"] = _number(policy.threshold)
    if policy.target_small_share is not None:
        entry["target_small_share"] = _number(policy.target_small_share)
    if full and "threshold" not in entry and "target_small_share" not in entry:
        entry["threshold"] = 0.5
    if policy.slm_timeout_ms is not None or full:
        entry["slm_timeout_ms"] = policy.slm_timeout_ms or DEFAULT_SLM_TIMEOUT_MS
    if policy.confidence_floor is not None:
        entry["confidence_floor"] = _number(policy.confidence_floor)
    if policy.over_budget or full:
        entry["over_budget"] = policy.over_budget or "block"
    rules: dict[str, Any] = {}
    for name, attr in RULE_FIELDS.items():
        value = getattr(policy, attr)
        if value is not None or full:
            rules[name] = True if value is None else value
    if policy.context_margin_tokens is not None or full:
        rules["context_margin_tokens"] = (
            DEFAULT_CONTEXT_MARGIN if policy.context_margin_tokens is None else policy.context_margin_tokens
        )
    if rules:
        entry["rules"] = rules
    if policy.scorer_adjustment and not full:
        entry["scorer_adjustment"] = policy.scorer_adjustment
    if full:
        # the effective breaker, defaults included, so the bundle says exactly what proxies do
        breaker = asdict(BreakerSettings())
        for attr, name in BREAKER_FIELDS.items():
            value = getattr(policy, attr)
            if value is not None:
                breaker[name] = _number(value) if isinstance(value, Decimal) else value
        entry["breaker"] = breaker
    return entry


def key_entry(key: FeatureKey) -> dict[str, Any]:
    return {
        "key_hash": key.key_hash,
        "team": key.feature.team.slug,
        "feature": key.feature.slug,
        "team_code": str(key.feature.team.code),
        "feature_code": str(key.feature.code),
        "expires_at": key.expires_at.isoformat(timespec="seconds") if key.expires_at else None,
        "revoked": key.is_revoked,
    }


def bundle_experiments() -> list[dict[str, Any]]:
    """Running experiments in the bundle's shape (routing.engine.bundle)."""
    running = Experiment.objects.filter(status=ExperimentStatus.RUNNING).select_related("feature")
    return [
        {
            "id": e.slug,
            "feature": e.feature.slug,
            "sticky_by": e.sticky_by,
            "arms": [
                {"name": a.name, "threshold": float(a.threshold), "weight": a.weight} for a in e.arms.all()
            ],
        }
        for e in running.prefetch_related("arms")
    ]


def budget_entries(given: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The bundle's `budgets` section as the provider states it now (deterministic order)."""
    states = list(given) if given is not None else providers.budget_states()
    return sorted(states, key=lambda b: (str(b.get("team")), str(b.get("feature"))))


def experiment_entries(given: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The bundle's `experiments` section: the running experiments, by id."""
    entries = list(given) if given is not None else bundle_experiments()
    return sorted(entries, key=lambda e: str(e.get("id")))


def _check_references(doc: dict[str, Any], errors: list[str]) -> None:
    """References the schema cannot check: budgets and experiments must name existing teams and features."""
    feature_slugs = set(Feature.objects.values_list("slug", flat=True))
    team_slugs = set(Team.objects.values_list("slug", flat=True))
    for i, budget in enumerate(doc.get("budgets") or []):
        if not isinstance(budget, dict):
            continue
        if budget.get("feature") not in feature_slugs:
            errors.append(
                f"$.budgets[{i}].feature: names feature {budget.get('feature')!r} that does not exist (remove the budget or create the feature)"
            )
        if budget.get("team") not in team_slugs:
            errors.append(f"$.budgets[{i}].team: names team {budget.get('team')!r} that does not exist")
    for i, experiment in enumerate(doc.get("experiments") or []):
        if isinstance(experiment, dict) and experiment.get("feature") not in feature_slugs:
            errors.append(
                f"$.experiments[{i}].feature: names feature {experiment.get('feature')!r} that does not exist (stop the experiment)"
            )


def fallback_pairs(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(policy name, small group, frontier group) after merging overrides onto the default."""
    policies = doc.get("policies") or {}
    default = policies.get(DEFAULT_POLICY) or {}
    pairs = []
    for name in sorted(policies):
        raw = policies[name] if isinstance(policies[name], dict) else {}
        small = raw.get("small_model", default.get("small_model"))
        frontier = raw.get("frontier_model", default.get("frontier_model"))
        if small and frontier:
            pairs.append((name, small, frontier))
    return pairs


def _check_fallbacks(doc: dict[str, Any], errors: list[str]) -> list[dict[str, list[str]]]:
    groups = {d.get("model_group") for d in doc.get("deployments") or [] if isinstance(d, dict)}
    fallbacks: dict[str, list[str]] = {}
    for name, small, frontier in fallback_pairs(doc):
        if frontier not in groups:
            errors.append(
                f"$.policies.{name}: falls back from {small!r} to {frontier!r}, which no active deployment serves (add or activate a frontier deployment)"
            )
            continue
        targets = fallbacks.setdefault(small, [])
        if frontier not in targets:
            targets.append(frontier)
    return [{small: targets} for small, targets in sorted(fallbacks.items())]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def litellm_check(config: dict[str, Any], fallbacks: list[dict[str, list[str]]]) -> list[str]:
    """LiteLLM's own validation of the model list and fallbacks (a Router built in-process, no calls made)."""
    from litellm import Router

    logging.getLogger("LiteLLM Router").setLevel(logging.WARNING)  # one INFO line per Router built
    errors: list[str] = []
    # prices are checked by the schema; a Router given prices would register them in litellm's global map
    model_list = [
        {
            **entry,
            "litellm_params": {
                k: v for k, v in entry["litellm_params"].items() if not k.endswith("_cost_per_token")
            },
        }
        for entry in config["model_list"]
    ]
    for i, entry in enumerate(model_list):
        try:
            Router(model_list=[entry])
        except Exception as exc:  # litellm raises pydantic, BadRequest and ValueError kinds
            errors.append(
                f"$.deployments[{i}]: LiteLLM refuses {entry['litellm_params'].get('model')!r}: {_first_line(exc)}"
            )
    if not errors:
        try:
            Router(model_list=model_list, fallbacks=fallbacks)
        except Exception as exc:
            errors.append(
                f"$.deployments: LiteLLM refuses the model list with its fallbacks: {_first_line(exc)}"
            )
    return errors


def render_config(bundle: Bundle) -> tuple[dict[str, Any], str]:
    # start-up cost: the proxy's bootstrap imports litellm (about 1 s); only the bundle page renders a config
    from routing.proxy.bootstrap import litellm_config

    config = litellm_config(bundle)
    text = (
        f"# Generated by the control plane from bundle {bundle.version} ({bundle.content_hash[:12]}).\n"
        "# Provider keys are os.environ/NAME references; live policy changes arrive through the plugin.\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    return config, text


def compile_document(
    *,
    version: str,
    created_at: str | None,
    budget_states: list[dict[str, Any]] | None = None,
    experiments: list[dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The bundle document from the database (deterministic order), plus reference errors found on the way."""
    errors: list[str] = []
    deployments = sorted(
        ModelDeployment.objects.filter(is_active=True), key=lambda d: (d.group, d.name, d.litellm_model)
    )
    policies: dict[str, Any] = {}
    default = RoutingPolicy.objects.filter(feature__isnull=True).select_related(
        "small_deployment", "frontier_deployment"
    )
    default_policy = default.first()
    if default_policy is None:
        errors.append("$.policies.default: there is no default policy (create it on the Routing page)")
    else:
        policies[DEFAULT_POLICY] = policy_entry(default_policy, "$.policies.default", errors)
    overrides = RoutingPolicy.objects.filter(feature__isnull=False).select_related(
        "feature", "small_deployment", "frontier_deployment"
    )
    for policy in sorted(overrides, key=lambda p: p.feature.slug):
        path = f"$.policies.{policy.feature.slug}"
        policies[policy.feature.slug] = policy_entry(policy, path, errors)
    keys = sorted(
        # keys of inactive features leave the bundle: the proxy refuses them as unknown
        (
            key_entry(k)
            for k in FeatureKey.objects.filter(feature__is_active=True).select_related("feature__team")
        ),
        key=lambda k: k["key_hash"],
    )
    budgets = budget_entries(budget_states)
    running = experiment_entries(experiments)
    doc: dict[str, Any] = {
        "schema": BUNDLE_SCHEMA,
        "version": version,
        "created_at": created_at,
        "deployments": [deployment_entry(d) for d in deployments],
        "policies": policies,
        "budgets": budgets,
        "experiments": running,
        "keys": keys,
    }
    if default_policy is not None and default_policy.scorer_weights:
        # the thresholds are on this scorer's scale: proxies score with it (unpinned bundles keep v1)
        doc["scorer_weights"] = default_policy.scorer_weights
    if created_at is None:
        doc.pop("created_at")
    return with_content_hash(doc), errors


def validate_document(doc: dict[str, Any], errors: list[str] | None = None) -> CompiledBundle:
    """Every check on a compiled document; renders the config when the schema holds."""
    errors = list(errors or [])
    errors.extend(validate_bundle(doc))
    _check_references(doc, errors)
    fallbacks = _check_fallbacks(doc, errors)
    result = CompiledBundle(document=doc, errors=errors)
    if validate_bundle(doc):
        result.errors = _unique(errors)
        return result
    bundle = Bundle.from_json(doc)
    config, result.config_yaml = render_config(bundle)
    errors.extend(litellm_check(config, fallbacks))
    result.errors = _unique(errors)
    return result


def _unique(errors: list[str]) -> list[str]:
    seen: set[str] = set()
    return [e for e in errors if not (e in seen or seen.add(e))]  # type: ignore[func-returns-value]


def compile_bundle(
    *,
    version: str,
    created_at: str | None = None,
    budget_states: list[dict[str, Any]] | None = None,
    experiments: list[dict[str, Any]] | None = None,
) -> CompiledBundle:
    """Compile and validate; `errors` is empty when the bundle may be published."""
    doc, errors = compile_document(
        version=version, created_at=created_at, budget_states=budget_states, experiments=experiments
    )
    result = validate_document(doc, errors)
    result.errors = _unique(result.errors)
    return result


# --- diff -------------------------------------------------------------------------------------------

IGNORED_IN_DIFF = {"content_hash", "created_at", "signature"}
ENDPOINT_FIELDS = ("api_base", "api_key")  # where a deployment sends which secret


def _touches_endpoint(path: str, kind: str, before: Any, after: Any) -> bool:
    if not path.startswith("$.deployments"):
        return False
    if path.endswith(tuple(f".{name}" for name in ENDPOINT_FIELDS)):
        return True
    whole = after if kind == "added" else before if kind == "removed" else None
    return isinstance(whole, dict) and any(whole.get(name) for name in ENDPOINT_FIELDS)


@dataclass(frozen=True)
class Change:
    path: str
    kind: str  # added, removed, changed
    before: Any = None
    after: Any = None
    endpoint: bool = False  # changes where a provider key is sent: reviewed with extra care (admin only)

    def __post_init__(self) -> None:
        object.__setattr__(self, "endpoint", _touches_endpoint(self.path, self.kind, self.before, self.after))


def _identity(item: Any) -> str | None:
    if not isinstance(item, dict):
        return None
    if "key_hash" in item:
        return f"key {item.get('team')}/{item.get('feature')} {str(item['key_hash'])[:12]}"
    if "model_group" in item:
        return f"{item['model_group']}/{item.get('model')}"
    if "id" in item:
        return str(item["id"])
    if "team" in item and "feature" in item:
        return f"{item['team']}/{item['feature']}"
    if "name" in item:
        return str(item["name"])
    return None


def _walk(path: str, before: Any, after: Any, out: list[Change]) -> None:
    if isinstance(before, dict) and isinstance(after, dict):
        for name in sorted(set(before) | set(after)):
            if path == "$" and name in IGNORED_IN_DIFF:
                continue
            sub = f"{path}.{name}"
            if name not in before:
                out.append(Change(sub, "added", after=after[name]))
            elif name not in after:
                out.append(Change(sub, "removed", before=before[name]))
            else:
                _walk(sub, before[name], after[name], out)
        return
    if isinstance(before, list) and isinstance(after, list):
        ids_before = [_identity(i) for i in before]
        ids_after = [_identity(i) for i in after]
        keyed = all(ids_before) and all(ids_after)
        if keyed and len(set(ids_before)) == len(ids_before) and len(set(ids_after)) == len(ids_after):
            old = dict(zip(ids_before, before, strict=True))
            new = dict(zip(ids_after, after, strict=True))
            for ident in sorted(set(old) | set(new), key=str):
                sub = f"{path}[{ident}]"
                if ident not in old:
                    out.append(Change(sub, "added", after=new[ident]))
                elif ident not in new:
                    out.append(Change(sub, "removed", before=old[ident]))
                else:
                    _walk(sub, old[ident], new[ident], out)
            return
        for i in range(max(len(before), len(after))):
            sub = f"{path}[{i}]"
            if i >= len(before):
                out.append(Change(sub, "added", after=after[i]))
            elif i >= len(after):
                out.append(Change(sub, "removed", before=before[i]))
            else:
                _walk(sub, before[i], after[i], out)
        return
    if canonical_json(before) != canonical_json(after):
        out.append(Change(path, "changed", before=before, after=after))


def bundle_diff(before: dict[str, Any] | None, after: dict[str, Any]) -> list[Change]:
    """Readable JSON-path changes from one bundle document to another (hash and time left out)."""
    out: list[Change] = []
    _walk("$", before or {}, after, out)
    return out
