"""The LiteLLM callback: routes each call, bounds the SLM attempt, escalates low confidence, records spend.

Loaded by a stock proxy through `litellm_settings.callbacks: ["routing.proxy.entry.finops_router"]`.
LiteLLM calls the logging methods by keyword (`kwargs=`, `response_obj=`, `start_time=`,
`end_time=`): those parameter names are part of the contract.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections import OrderedDict
from dataclasses import asdict
from decimal import Decimal
from typing import Any

from fastapi import HTTPException
from litellm.integrations.custom_logger import CustomLogger

from routing.engine.decision import BudgetBlocked, Decision, decide
from routing.engine.spend import SLM_UNAVAILABLE
from routing.proxy import breaker
from routing.proxy.abandon import ABANDONED_ERROR, CURRENT_ATTEMPT, SlmAttempt
from routing.proxy.access import call_type_refusal
from routing.proxy.records import COOLDOWN_ERROR, STAMP_KEY, build_record, confidence_of, metadata_of
from routing.proxy.runtime import ProxyRuntime
from routing.proxy.stamps import is_sealed, mint_call_id, scrub_client_request, seal

log = logging.getLogger("finops.plugin")

UNATTRIBUTED = "unattributed"
FEATURE_HEADER = "x-finops-feature"
FEATURE_METADATA = "finops_feature"
IDENTITY_KEY = "finops_identity"  # where custom_auth leaves team/feature on UserAPIKeyAuth.metadata
FRONTIER_TIMEOUT_S = 600.0
SEEN_ATTEMPTS = 4096  # recent (call, attempt, status) triples, to drop LiteLLM's repeated failure events
# How long an answer may wait for its spend record to reach the spool before it is released anyway
# (and the release counted): the record is normally on disk within a millisecond or two.
SPOOLED_BEFORE_ANSWER_S = 2.0


class FinOpsRouter(CustomLogger):
    def __init__(self, runtime_factory: Any) -> None:
        super().__init__()
        self._runtime_factory = runtime_factory
        self._seen: OrderedDict[tuple[str, int, str], None] = OrderedDict()
        # success records queued for the spool, by (call id, escalation), with their sequence numbers;
        # and the answers waiting for one of them (`_spooled_before_answer`)
        self._queued: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._awaiting: dict[tuple[str, str], asyncio.Future[int]] = {}
        self.released_unspooled = 0  # answers released before their record was on disk (timeout)

    @property
    def runtime(self) -> ProxyRuntime:
        return self._runtime_factory()

    # -- identity --------------------------------------------------------------------------------
    @staticmethod
    def _identity(user_api_key_dict: Any, data: dict[str, Any], runtime: ProxyRuntime) -> tuple[str, str]:
        identity = (getattr(user_api_key_dict, "metadata", None) or {}).get(IDENTITY_KEY) or {}
        team = identity.get("team") or UNATTRIBUTED
        feature = identity.get("feature") or UNATTRIBUTED
        bundle = runtime.bundle
        allowed = identity.get("features") or ()
        if bundle is not None and allowed:
            wanted = ""
            if bundle.attribution.header:
                headers = ((data.get("proxy_server_request") or {}).get("headers")) or {}
                wanted = headers.get(FEATURE_HEADER, "")
            if not wanted and bundle.attribution.metadata:
                wanted = (data.get("metadata") or {}).get(FEATURE_METADATA, "")
            if wanted and wanted in allowed:
                feature = wanted
        return team, feature

    # -- hot path --------------------------------------------------------------------------------
    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: Any
    ) -> dict[str, Any]:
        runtime = self.runtime
        runtime.loop_lag.ensure_running()
        bundle = runtime.bundle  # one snapshot per call: a concurrent swap cannot mix two versions
        if bundle is None:
            raise HTTPException(
                status_code=503,
                detail="routing bundle not loaded yet: the proxy is waiting for the control plane",
            )
        refusal = call_type_refusal(call_type, data)
        if refusal is not None:  # deny by default: what we cannot route and meter never reaches an upstream
            runtime.blocked.count(_who(user_api_key_dict), "endpoint")
            raise refusal
        scrub_client_request(data)
        if bundle.topology != runtime.router_topology:
            from litellm.proxy.proxy_server import llm_router

            if llm_router is not None:
                runtime.sync_router(
                    bundle, llm_router
                )  # on the event loop: no request sees a half-built list
        team, feature = self._identity(user_api_key_dict, data, runtime)
        end_user = str(data.get("user") or (data.get("metadata") or {}).get("end_user") or "")
        call_id = mint_call_id(data)  # never the caller's x-litellm-call-id: one record per attempt, always
        try:
            decision = decide(
                bundle,
                team=team,
                feature=feature,
                data=data,
                sticky_key=end_user or call_id,
                request_key=call_id,
                score_fn=runtime.score_fn(),
                scored_fn=runtime.scored_fn(),
                shares=runtime.shares,
            )
            decision, admission = breaker.gate(runtime.breakers, decision)
        except BudgetBlocked as blocked:
            runtime.blocked.count(_who(user_api_key_dict, team, feature), "budget")
            raise HTTPException(status_code=429, detail=str(blocked)) from None
        except breaker.SmallModelUnavailable as unavailable:
            raise HTTPException(status_code=503, detail=str(unavailable)) from None
        policy = bundle.policy_for(feature)
        data["model"] = decision.model_group
        data["fallbacks"] = []  # only the policy picks fallbacks
        if decision.route == "small":
            data["timeout"] = decision.slm_timeout_s
            data["fallbacks"] = [decision.fallback_group] if decision.fallback_group else []
            if decision.confidence_floor is not None and not data.get("stream"):
                data["logprobs"] = True
        metadata = data.get("metadata")
        if not isinstance(metadata, dict):
            metadata = data["metadata"] = {}
        stamp = _stamp(decision, team, feature, call_id, end_user, bundle.version, policy.frontier_model)
        timeouts = [d.timeout_s for d in bundle.deployments_in(policy.frontier_model) if d.timeout_s]
        stamp["frontier_timeout_s"] = max(timeouts) if timeouts else FRONTIER_TIMEOUT_S
        stamp.update(breaker.stamp_fields(admission))
        who = _who(user_api_key_dict, team, feature)
        stamp.update(team_code=who.team_code, feature_code=who.feature_code)
        metadata[STAMP_KEY] = seal(stamp)
        return data

    async def async_pre_call_deployment_hook(
        self, kwargs: dict[str, Any], call_type: Any
    ) -> dict[str, Any] | None:
        """Only the SLM attempt gets the aggressive timeout; the frontier fallback gets its own.

        Runs in the request's task just before LiteLLM sends the attempt: the SLM attempt is marked
        in the task's context so an opening breaker can cut it off (`routing.proxy.abandon`).
        """
        CURRENT_ATTEMPT.set(None)
        metadata = kwargs.get("metadata") or {}
        stamp = metadata.get(STAMP_KEY) if isinstance(metadata, dict) else None
        if not is_sealed(stamp) or stamp.get("route") != "small":
            return None
        if metadata.get("model_group") == stamp["model_group"]:
            kwargs["timeout"] = stamp["slm_timeout_s"]
            generation = stamp.get("breaker_generation")
            if isinstance(generation, int) and not stamp.get("escalation"):
                CURRENT_ATTEMPT.set(SlmAttempt(stamp["model_group"], generation, str(stamp["call_id"])))
        else:
            kwargs["timeout"] = stamp.get("frontier_timeout_s") or FRONTIER_TIMEOUT_S
            kwargs.pop("logprobs", None)
        return kwargs

    async def async_post_call_success_hook(
        self, data: dict[str, Any], user_api_key_dict: Any, response: Any
    ) -> Any:
        """Escalate a low-confidence SLM answer, then hold the answer until its spend record is on disk."""
        stamp = (data.get("metadata") or {}).get(STAMP_KEY)
        if not is_sealed(stamp):
            return None
        replaced = await self._escalate_if_unsure(data, stamp, response)
        # a stream's record comes at its end (the iterator hook); "stream" as LiteLLM reads it: only `true`
        if data.get("stream") is not True:
            await self._spooled_before_answer(str(stamp["call_id"]), "")
            if replaced is not None:
                await self._spooled_before_answer(str(stamp["call_id"]), "low_confidence")
        return replaced

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: Any, response: Any, request_data: dict[str, Any]
    ) -> Any:
        """Pass the stream through; its end (`[DONE]`) waits until the call's spend record is on disk."""
        async for chunk in response:
            yield chunk
        stamp = (request_data.get("metadata") or {}).get(STAMP_KEY)
        if is_sealed(stamp):
            await self._spooled_before_answer(str(stamp["call_id"]), "")

    async def _spooled_before_answer(self, call_id: str, escalation: str) -> None:
        """Wait until the success record of this call (or of its escalation) went through a spool write.

        LiteLLM logs success in a task of its own, scheduled before this hook runs; the answer leaves
        only after that record is in the SQLite file, so a proxy killed right after answering has
        metered the call. Bounded: after SPOOLED_BEFORE_ANSWER_S the answer goes anyway and is counted.
        """
        try:
            await self._wait_spooled(call_id, escalation)
        except Exception as exc:  # metering must never fail an answered call
            log.exception("finops: waiting for the spend record failed")
            self.runtime.note_error(f"spend record wait failed: {type(exc).__name__}: {exc}")

    async def _wait_spooled(self, call_id: str, escalation: str) -> None:
        key = (call_id, escalation)
        started = asyncio.get_running_loop().time()
        seq = self._queued.get(key)
        if seq is None:
            future = self._awaiting.get(key)
            if future is None:
                future = self._awaiting[key] = asyncio.get_running_loop().create_future()
            try:
                seq = await asyncio.wait_for(asyncio.shield(future), SPOOLED_BEFORE_ANSWER_S)
            except TimeoutError:
                seq = None
            finally:
                self._awaiting.pop(key, None)
        left = SPOOLED_BEFORE_ANSWER_S - (asyncio.get_running_loop().time() - started)
        if seq is not None and await self.runtime.shipper.until_written(seq, max(0.0, left)):
            return
        self.released_unspooled += 1
        self.runtime.note_error(
            f"answered {self.released_unspooled} call(s) before their spend record reached the spool "
            f"(waited {SPOOLED_BEFORE_ANSWER_S:g} s): check the proxy's disk and event loop"
        )

    def _queued_success(self, call_id: str, escalation: str, seq: int) -> None:
        key = (call_id, escalation)
        self._queued[key] = seq
        if len(self._queued) > SEEN_ATTEMPTS:
            self._queued.popitem(last=False)
        future = self._awaiting.get(key)
        if future is not None and not future.done():
            future.set_result(seq)

    async def _escalate_if_unsure(self, data: dict[str, Any], stamp: dict[str, Any], response: Any) -> Any:
        """Low confidence: replace an SLM answer under the policy's floor with the frontier model's answer."""
        if stamp.get("confidence_floor") is None or data.get("stream"):
            return None
        served_group = (getattr(response, "_hidden_params", None) or {}).get("model_group") or (
            data.get("metadata") or {}
        ).get("model_group")
        if served_group != stamp["model_group"]:
            return None  # already served by the fallback
        confidence = confidence_of(response)
        if confidence is None or confidence >= stamp["confidence_floor"]:
            return None
        from litellm.proxy.proxy_server import llm_router  # the proxy's own router: same topology and keys

        if llm_router is None:
            return None
        escalated_stamp = {**stamp, "escalation": "low_confidence"}
        request = {k: v for k, v in data.items() if k in _ESCALATION_PARAMS}  # the caller's request, not ours
        try:
            return await llm_router.acompletion(
                model=stamp["frontier_group"],
                metadata={STAMP_KEY: escalated_stamp},
                timeout=stamp.get("frontier_timeout_s") or FRONTIER_TIMEOUT_S,
                **request,
            )
        except Exception as exc:  # keep the SLM answer rather than fail a call that has one
            self.runtime.note_error(f"low-confidence escalation failed: {type(exc).__name__}: {exc}")
            return None

    # -- spend records ---------------------------------------------------------------------------
    def _record(
        self, kwargs: dict[str, Any], response_obj: Any, status: str, start_time: Any, end_time: Any
    ) -> None:
        try:
            runtime = self.runtime
            if not is_sealed(metadata_of(kwargs).get(STAMP_KEY)):
                return  # no decision of ours: a caller-made stamp is never recorded
            record = build_record(
                kwargs,
                response_obj,
                status=status,
                bundle=runtime.bundle,
                start_time=start_time,
                end_time=end_time,
            )
            if record is None:
                return
            if status == "error" and not record.deployment and _is_final_proxy_failure(kwargs):
                return  # the proxy's summary failure event repeats an attempt already recorded
            if record.attempt == 2 and record.fallback and _skipped_by_cooldown(kwargs):
                self._record_skipped_first_attempt(record, kwargs, runtime)
            abandoned = runtime.was_abandoned(record.call_id)
            if abandoned and record.attempt == 1 and record.status == "error":
                record = dataclasses.replace(record, error_class=ABANDONED_ERROR)
            elif abandoned and record.attempt == 2 and record.fallback:
                record = dataclasses.replace(record, fallback_reason=SLM_UNAVAILABLE)
            seen_key = (record.call_id, record.attempt, record.status)
            if seen_key in self._seen:
                return
            self._seen[seen_key] = None
            if len(self._seen) > SEEN_ATTEMPTS:
                self._seen.popitem(last=False)
            if not abandoned:  # cut off by the opening itself: says nothing more about the SLM
                breaker.observe(runtime.breakers, kwargs, record)
            seq = runtime.shipper.enqueue(record.to_json())
            if status == "success":
                stamp = metadata_of(kwargs).get(STAMP_KEY) or {}
                self._queued_success(record.call_id, str(stamp.get("escalation") or ""), seq)
        except Exception as exc:  # a logging problem must never surface to the caller
            log.exception("finops: could not record spend")
            self.runtime.note_error(f"spend record failed: {type(exc).__name__}: {exc}")

    def _record_skipped_first_attempt(
        self, fallback: Any, kwargs: dict[str, Any], runtime: ProxyRuntime
    ) -> None:
        """LiteLLM logs no failure when it skips a cooled-down group: record that refused first attempt ourselves."""
        key = (fallback.call_id, 1, "error")
        if key in self._seen or (fallback.call_id, 1, "success") in self._seen:
            return
        self._seen[key] = None
        stamp = metadata_of(kwargs).get(STAMP_KEY) or {}
        first = dataclasses.replace(
            fallback,
            event_id=uuid.uuid4().hex,
            attempt=1,
            model_group=str(stamp.get("model_group") or fallback.model_group),
            deployment="",
            status="error",
            error_class=COOLDOWN_ERROR,
            input_tokens=0,
            output_tokens=0,
            cost_usd=Decimal("0"),
            baseline_cost_usd=Decimal("0"),
            first_token_time=None,
            end_time=fallback.start_time,
            fallback=False,
            fallback_reason="",
            confidence=None,
        )
        runtime.shipper.enqueue(first.to_json())

    async def async_log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._record(kwargs, response_obj, "success", start_time, end_time)

    async def async_log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._record(kwargs, response_obj, "error", start_time, end_time)


_ESCALATION_PARAMS = frozenset(
    {
        "messages",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "n",
        "presence_penalty",
        "frequency_penalty",
        "user",
        "seed",
        "tools",
        "tool_choice",
        "response_format",
    }
)


@dataclasses.dataclass(frozen=True)
class _Who:
    """Team and feature charged for a call, with their public codes when known."""

    team: str
    feature: str
    team_code: str = ""
    feature_code: str = ""


def _who(user_api_key_dict: Any, team: str = "", feature: str = "") -> _Who:
    """Codes come from the key entry: the key's team, its own feature and the extra features it lists."""
    identity = (getattr(user_api_key_dict, "metadata", None) or {}).get(IDENTITY_KEY) or {}
    team = team or str(identity.get("team") or "")
    feature = feature or str(identity.get("feature") or "")
    own_team = team == identity.get("team")
    feature_code = ""
    if own_team and feature == identity.get("feature"):
        feature_code = str(identity.get("feature_code") or "")
    elif own_team and feature in (identity.get("features") or ()):
        feature_code = str((identity.get("feature_codes") or {}).get(feature) or "")
    return _Who(team, feature, str(identity.get("team_code") or "") if own_team else "", feature_code)


def _is_final_proxy_failure(kwargs: dict[str, Any]) -> bool:
    """LiteLLM logs one extra failure for the whole request after the router gave up."""
    metadata = metadata_of(kwargs)
    return not metadata.get("deployment") and bool(metadata.get("previous_models"))


def _stamp(
    decision: Decision,
    team: str,
    feature: str,
    call_id: str,
    end_user: str,
    bundle_version: str,
    frontier_group: str,
) -> dict[str, Any]:
    stamp = asdict(decision)
    stamp.update(
        team=team,
        feature=feature,
        call_id=call_id,
        end_user=end_user,
        bundle_version=bundle_version,
        frontier_group=frontier_group,
    )
    return stamp


def _skipped_by_cooldown(kwargs: dict[str, Any]) -> bool:
    """Did LiteLLM refuse the previous group without calling it (every deployment cooling down)?"""
    previous = metadata_of(kwargs).get("previous_models") or []
    last = previous[-1] if previous and isinstance(previous[-1], dict) else {}
    text = f"{last.get('exception_type', '')} {last.get('exception_string', '')}"
    return COOLDOWN_ERROR in text or "No deployments available" in text
