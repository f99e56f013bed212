"""Simulate a feature learning from its own outcomes, through a real LiteLLM proxy with our plugin.

The feature's small model fails on one kind of ask (quantitative: probabilities, interest, variance) and
answers the rest well. Phase one runs the shared scorer: every ask goes to the small model, the quantitative
ones fail over to the frontier model or come back wrong (the simulated user gives a thumbs-down). The spend
the proxy ships is ingested, the feedback recorded through the feedback service, then the scheduled fit
proposes an adjustment, MLOps approves it into the policy draft, a publish compiles the bundle (preview,
then publish) and it is pushed to the proxy, which validates it on load. Phase two runs the same mix.

    DEBUG=true python manage.py simulate_adjustment --calls 400

It runs in a throwaway database (created and dropped here) and prints before/after figures.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand

FAIL_WORDS = ["probability", "interest", "percent", "variance", "odds", "expected"]
ROUTINE = [
    "Rewrite this sentence in a friendlier tone: {x}",
    "Translate into French: {x}",
    "Classify the sentiment of this review as positive or negative: {x}",
    "Give this support thread a short title: {x}",
    "Fix the spelling in: {x}",
    "Summarise in one line: {x}",
    "Turn these notes into a bullet list: {x}",
    "Extract the customer's name and order number from: {x}",
]
ROUTINE_TEXT = [
    "my order 4471 from Dana Lee never arrived",
    "the app keeps crashing when I log in",
    "thanks for the quick reply, all sorted",
    "please reset my password, I am locked out",
    "the invoice is attached for March",
    "meeting moved to Thursday, bring the slides",
    "recieve the pakage tomorow at the frnt desk",
]
QUANTITATIVE = [
    "A bag holds {a} red and {b} blue marbles. Two are drawn without replacement. What is the probability both are blue?",
    "Calculate the compound interest on {c} dollars at {a}% a year over {b} years, compounded monthly.",
    "Our churn is {a} percent a month. Estimate the share of January's customers still with us after {b} months.",
    "Compute the variance of the sum of {a} independent fair dice.",
    "What are the odds of getting at least {a} heads in {c} coin flips?",
    "Estimate the expected number of rolls of a {b}-sided die until every face has appeared.",
]
THRESHOLD = Decimal("0.300")  # above every ask of this mix on the shared scorer: all go small at first
PROXY_TOKEN = "proxy-token-adjustment-simulation"


def ask(rng: random.Random, quantitative: bool) -> str:
    if quantitative:
        return rng.choice(QUANTITATIVE).format(
            a=rng.randint(2, 9), b=rng.randint(3, 12), c=rng.randint(10, 5000)
        )
    return rng.choice(ROUTINE).format(x=rng.choice(ROUTINE_TEXT))


@dataclass
class PhaseFigures:
    """What one phase of traffic did, counted with the spend record's own rules."""

    calls: int
    small_share: float
    fallback_rate: float  # small-model fallbacks (timeout, error, low confidence) per call
    bad_feedback_rate: float  # thumbs-downs per call
    quantitative_to_frontier: float  # share of the failing kind the proxy sent to the frontier by score
    routine_to_small: float
    cost_usd: Decimal
    baseline_usd: Decimal

    @property
    def savings_usd(self) -> Decimal:
        return self.baseline_usd - self.cost_usd

    @property
    def savings_share(self) -> float:
        return float(self.savings_usd / self.baseline_usd) if self.baseline_usd else 0.0

    def line(self, name: str) -> str:
        return (
            f"{name}: calls={self.calls} small_share={self.small_share:.3f} fallback_rate={self.fallback_rate:.3f} "
            f"bad_feedback_rate={self.bad_feedback_rate:.3f} quantitative_to_frontier={self.quantitative_to_frontier:.3f} "
            f"routine_to_small={self.routine_to_small:.3f} cost_usd={self.cost_usd:.6f} "
            f"baseline_usd={self.baseline_usd:.6f} savings_usd={self.savings_usd:.6f} "
            f"savings_share={self.savings_share:.3f}"
        )


def _chat(url: str, key: str, content: str) -> tuple[int, dict[str, Any], str]:
    """(status, body, call id from the x-litellm-call-id header) of one chat call through the proxy."""
    body = json.dumps({"model": "auto", "messages": [{"role": "user", "content": content}]}).encode()
    request = urllib.request.Request(url + "/chat/completions", data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback only
            return response.status, json.loads(response.read()), response.headers.get("x-litellm-call-id", "")
    except urllib.error.HTTPError as exc:
        return exc.code, {"error": exc.read().decode(errors="replace")}, ""


def simulate(
    *,
    calls: int,
    failing_share: float = 0.2,
    seed: int = 7,
    workdir: Path,
    say: Callable[[str], None] = print,
) -> tuple[PhaseFigures, PhaseFigures, Any]:
    """Run both phases against the current database; returns (before, after, the approved proposal)."""
    os.environ.setdefault("FINOPS_TEST_UPSTREAM_KEY", "sk-fake-upstream")
    from django.contrib.auth import get_user_model

    from billing.services import spend_batch_ingest
    from controlplane.models import Feature, Membership, Role, Team
    from routing import services, tasks
    from routing.compiler import compile_bundle
    from routing.devtools.fake_upstream import FakeUpstream, UpstreamBehaviour
    from routing.devtools.harness import ControlPlaneDouble, ProxyProcess, dev_signed
    from routing.engine import spend
    from routing.models import AdjustmentProposal, AdjustmentStatus, Bundle
    from routing.services import adjustments, experiments

    rng = random.Random(seed)
    admin = get_user_model().objects.create_user("simulation-admin")
    Membership.objects.create(user=admin, team=None, role=Role.ADMIN)
    mlops = get_user_model().objects.create_user("simulation-mlops")
    Membership.objects.create(user=mlops, team=None, role=Role.MLOPS)
    team = Team.objects.create(name="Simulation", slug="simulation")
    feature = Feature.objects.create(team=team, name="Support answers", slug="support-answers")
    slm = FakeUpstream(UpstreamBehaviour(name="slm", fail_words=FAIL_WORDS, fail_share=0.7)).start()
    frontier = FakeUpstream(UpstreamBehaviour(name="frontier")).start()
    small = services.deployment_create(
        actor=admin,
        name="slm",
        tier="small",
        litellm_model="openai/llama-3-8b-instruct",
        api_base=slm.base_url,
        api_key_env="FINOPS_TEST_UPSTREAM_KEY",
        input_price_per_mtok=Decimal("0.10"),
        output_price_per_mtok=Decimal("0.20"),
    )
    big = services.deployment_create(
        actor=admin,
        name="frontier",
        tier="frontier",
        litellm_model="openai/gpt-4o",
        api_base=frontier.base_url,
        api_key_env="FINOPS_TEST_UPSTREAM_KEY",
        context_window=128000,
        supports_tools=True,
        supports_vision=True,
        supports_structured_output=True,
        input_price_per_mtok=Decimal("3.00"),
        output_price_per_mtok=Decimal("15.00"),
        timeout_s=Decimal("30"),
    )
    services.policy_create(
        actor=mlops, feature=None, small_deployment=small, frontier_deployment=big, threshold=THRESHOLD
    )
    key, plaintext = services.feature_key_create(actor=admin, feature=feature, name="simulation")
    first = services.bundle_publish(actor=mlops, note="simulation: shared scorer", rollout=False)
    control_plane = ControlPlaneDouble(PROXY_TOKEN).start()
    control_plane.set_bundle(dev_signed(first.document))
    proxy = ProxyProcess(
        dev_signed(first.document),
        workdir,
        proxy_token=PROXY_TOKEN,
        control_plane_url=control_plane.url,
        heartbeat_s=1.0,
    )
    ingested: set[str] = set()

    def phase(name: str) -> PhaseFigures:
        kinds: dict[str, bool] = {}
        bad = 0
        for _ in range(calls):
            quantitative = rng.random() < failing_share
            status, body, call_id = _chat(proxy.url, plaintext, ask(rng, quantitative))
            if status != 200 or not call_id:
                raise RuntimeError(f"{name}: the proxy answered {status}: {body}\n{proxy.log_tail()}")
            kinds[call_id] = quantitative
            by_small = "answer from slm" in json.dumps(body)
            # the simulated user: a small-model answer to the failing kind is wrong, the rest are fine
            rating = (
                1 if by_small and quantitative else (5 if rng.random() < (0.5 if by_small else 0.3) else None)
            )
            if rating is not None:
                experiments.feedback_record(key=key, call_id=call_id, score=rating)
                bad += rating <= 2

        def shipped() -> list[dict[str, Any]]:
            return [r for r in control_plane.records_for(feature=feature.slug) if r["call_id"] in kinds]

        deadline = time.monotonic() + 60
        while len({r["call_id"] for r in shipped()}) < len(kinds) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)  # a fallback's second attempt may ship a batch after its first
        raw = shipped()
        records, errors = spend.parse_spend_batch(
            {"records": [r for r in raw if r["event_id"] not in ingested]}
        )
        if errors:
            raise RuntimeError(f"{name}: the proxy shipped records the control plane refuses: {errors[:3]}")
        spend_batch_ingest(proxy=None, records=records)
        ingested.update(r.event_id for r in records)
        firsts = {r["call_id"]: r for r in raw if r["attempt"] == spend.REQUEST_ATTEMPT}
        fell = {
            r["call_id"] for r in raw if spend.counts_against_small_model(r["fallback"], r["fallback_reason"])
        }
        quantitative_calls = [c for c, q in kinds.items() if q]
        routine_calls = [c for c, q in kinds.items() if not q]
        return PhaseFigures(
            calls=len(kinds),
            small_share=sum(firsts[c]["route"] == "small" for c in kinds) / len(kinds),
            fallback_rate=len(fell & kinds.keys()) / len(kinds),
            bad_feedback_rate=bad / len(kinds),
            quantitative_to_frontier=sum(firsts[c]["route"] == "frontier" for c in quantitative_calls)
            / max(1, len(quantitative_calls)),
            routine_to_small=sum(firsts[c]["route"] == "small" for c in routine_calls)
            / max(1, len(routine_calls)),
            cost_usd=sum((Decimal(r["cost_usd"]) for r in raw), Decimal(0)),
            baseline_usd=sum(
                (
                    Decimal(r["baseline_cost_usd"])
                    for r in raw
                    if spend.counts_toward_baseline(r["status"], r["fallback_reason"])
                ),
                Decimal(0),
            ),
        )

    try:
        proxy.start()
        say(
            f"proxy {proxy.url} on {first.version}: threshold {THRESHOLD}, the small model fails on {FAIL_WORDS}"
        )
        before = phase("before")
        say(before.line("before"))

        tasks.adjustments_propose()  # what beat runs each day
        proposal = AdjustmentProposal.objects.filter(
            feature=feature, status=AdjustmentStatus.PROPOSED
        ).first()
        if proposal is None:
            labelled = adjustments.feature_outcomes(feature=feature).labelled
            raise RuntimeError(
                f"no proposal: {labelled} labels, {adjustments.MIN_LABELS} needed; run more calls"
            )
        weights = ", ".join(f"{s['name']} {s['weight']:+.2f}" for s in proposal.adjustment["signals"])
        say(f"proposal from {proposal.labels} labels: offset {proposal.adjustment['offset']:+.3f}; {weights}")
        say(f"what-if current:  {proposal.whatif.get('current')}")
        say(f"what-if proposed: {proposal.whatif.get('proposed')}")
        adjustments.adjustment_approve(actor=mlops, proposal=proposal)
        preview = compile_bundle(version="preview")  # what the publish preview shows and pins
        latest = Bundle.objects.order_by("-number").first()
        second = services.bundle_publish(
            actor=mlops,
            note="simulation: approved adjustment",
            rollout=False,
            previewed=(preview.source_hash, latest.number if latest else 0),
        )
        signed = dev_signed(second.document)
        control_plane.set_bundle(signed)
        status, body, _ = proxy.push_bundle(signed)
        if status != 200:
            raise RuntimeError(f"the proxy refused {second.version}: {status} {body}")
        say(
            f"published {second.version} with the adjustment; the proxy applied {proxy.status().get('applied_version')}"
        )
        after = phase("after")
        say(after.line("after"))
        proposal.refresh_from_db()
        return before, after, proposal
    finally:
        proxy.stop()
        control_plane.stop()
        slm.stop()
        frontier.stop()


class Command(BaseCommand):
    help = (
        "Simulate a feature learning from its own outcomes through a real proxy; prints before/after figures."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--calls", type=int, default=400, help="Calls per phase (default 400).")
        parser.add_argument(
            "--failing-share",
            type=float,
            default=0.2,
            help="Share of asks of the kind the small model fails on.",
        )
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args: Any, **options: Any) -> None:
        from django.test.utils import setup_databases, teardown_databases

        from billing import partitions

        # a throwaway database: the simulation creates its own team, deployments, policy and bundles
        databases = setup_databases(verbosity=0, interactive=False, aliases={"default"})
        try:
            if partitions.is_partitioned():
                from django.utils import timezone

                partitions.partitions_ensure([partitions.month_start(timezone.now(), 0)])
            with tempfile.TemporaryDirectory(prefix="adjust-sim-") as workdir:
                simulate(
                    calls=options["calls"],
                    failing_share=options["failing_share"],
                    seed=options["seed"],
                    workdir=Path(workdir),
                    say=self.stdout.write,
                )
        finally:
            teardown_databases(databases, verbosity=0)
