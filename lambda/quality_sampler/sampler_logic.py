"""One scheduled run of the live-quality sampler over the monitored endpoints.

Per endpoint, from its tags alone (contracts/endpoint_tags.py):
- ``canary``: the candidate variant is judged against the run's reference, which the baseline (the
  serving variant, still beside it) writes on the first run of the canary from the evaluation's
  review prompts (``reports/review.json``) and which is stored under the run's prefix;
- ``promoted``, within ``after_promotion_seconds`` of ``llmq:promoted-at``: the serving variant (now
  the promoted model) is judged against that stored reference;
- anything else: nothing.
During a canary on a stage that captures (``captured_prompts`` > 0), that many recent captured prompts
(the last hour's capture files of the run, lambda/shared/capture_files.py) join the reference: the
baseline answers them in the same run, so they reflect today's traffic and are not stored. After
promotion there is no baseline to answer them, so only the stored reference is judged.
The metrics are contracts/live_quality.py's; they are published with PutMetricData under
``LLMQ/Quality`` with the judged variant's dimensions. One endpoint failing (a variant that errors
or times out, a missing object) is logged and reported, never stops the others.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from capture_files import capture_is_ours, capture_keys, hour_prefixes, read_prompts

from contracts.artifact_layout import REVIEW_FILE, quality_reference_key, report_key
from contracts.endpoint_tags import (
    PHASE_CANARY,
    PHASE_PROMOTED,
    TAG_MODEL,
    TAG_PHASE,
    TAG_PROMOTED_AT,
    TAG_RUN,
    tag_time,
)
from contracts.function_settings import QualitySamplerSettings
from contracts.live_quality import (
    NAMESPACE,
    Generation,
    ReferenceItem,
    build_reference,
    framed,
    generation_of,
    judge,
    metric_data,
    read_reference,
    reference_document,
)
from contracts.serving_protocol import NoPromptLogprobsError, PromptScore, lmi_body, lmi_generated_text, parse_lmi

logger = logging.getLogger(__name__)
# GetObject of a key that does not exist answers AccessDenied to a caller without s3:ListBucket
# (GetObject API reference); the sampler may read these keys, so either means "not there".
_MISSING = frozenset({"NoSuchKey", "AccessDenied", "404", "403"})
# A conditional PutObject that lost the race: another run stored the reference first.
_RACE_LOST = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})


class SampleError(Exception):
    """This endpoint cannot be sampled now; the message says why (reported, not raised)."""


@dataclass(frozen=True)
class Assignment:
    """What one run samples on one endpoint."""

    endpoint: str
    phase: str
    model_name: str
    run_id: str
    judged_variant: str
    # The serving variant beside a canary, which writes the reference; None after promotion.
    reference_variant: str | None
    # The endpoint captures into this run's prefix (DescribeEndpoint's DataCaptureConfig).
    captures: bool = False
    # The endpoint's production variants (each has its own capture prefix).
    variants: tuple[str, ...] = ()


def _seconds_since(stamp: str | None, now: datetime) -> float | None:
    then = tag_time(stamp)
    return None if then is None else (now - then).total_seconds()


def assignment(
    endpoint: str, tags: Mapping[str, str], variants: set[str], settings: QualitySamplerSettings, now: datetime
) -> Assignment | str:
    """What to sample on ``endpoint``, or why nothing."""
    phase = tags.get(TAG_PHASE)
    model, run = tags.get(TAG_MODEL), tags.get(TAG_RUN)
    if phase not in (PHASE_CANARY, PHASE_PROMOTED):
        return f"phase {phase or '(none)'}: not sampled"
    if not model or not run:
        return f"phase {phase} without {TAG_MODEL} and {TAG_RUN}: not sampled"
    serving, candidate = settings.serving_variant, settings.candidate_variant
    if phase == PHASE_CANARY:
        if not {serving, candidate} <= variants:
            return f"canary without both {serving} and {candidate} (a promotion or rollback is under way)"
        return Assignment(endpoint, phase, model, run, candidate, serving)
    return _after_promotion(endpoint, tags, variants, settings, now) or Assignment(
        endpoint, phase, model, run, serving, None
    )


def _after_promotion(
    endpoint: str, tags: Mapping[str, str], variants: set[str], settings: QualitySamplerSettings, now: datetime
) -> str | None:
    """Why a promoted endpoint is not sampled, or None."""
    age = _seconds_since(tags.get(TAG_PROMOTED_AT), now)
    # A missing or unreadable promoted-at counts as inside the window, as for the rollback function.
    if settings.after_promotion_seconds == 0 or (age is not None and age > settings.after_promotion_seconds):
        return f"{endpoint} was promoted more than {settings.after_promotion_seconds} s ago: not sampled"
    if settings.serving_variant not in variants:
        return f"{endpoint} is promoted without a variant named {settings.serving_variant}"
    return None


class LmiVariant:
    """One production variant through InvokeEndpoint with TargetVariant, in LMI's schema."""

    def __init__(self, runtime: Any, endpoint: str, variant: str, max_new_tokens: int) -> None:
        self.runtime, self.endpoint, self.variant, self.max_new_tokens = runtime, endpoint, variant, max_new_tokens

    def _invoke(self, body: dict[str, Any]) -> Any:
        try:
            response = self.runtime.invoke_endpoint(
                EndpointName=self.endpoint,
                TargetVariant=self.variant,
                ContentType="application/json",
                Accept="application/json",
                Body=json.dumps(body).encode(),
            )
            return json.loads(response["Body"].read())
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise SampleError(f"variant {self.variant}: {error.get('Code')}: {error.get('Message')}") from None
        except (BotoCoreError, ValueError) as exc:
            raise SampleError(f"variant {self.variant}: {type(exc).__name__}: {exc}") from None

    def generate(self, prompt: str, *, prompt_logprobs: bool = False) -> Generation:
        answer = self._invoke(lmi_body(prompt, max_new_tokens=self.max_new_tokens, prompt_logprobs=prompt_logprobs))
        try:
            return generation_of(answer, lmi_generated_text, parse_lmi if prompt_logprobs else None)
        except NoPromptLogprobsError as exc:  # no generated text at all
            raise SampleError(f"variant {self.variant}: {exc}") from None

    def score(self, text: str) -> PromptScore:
        """The text's prompt log-probabilities (NoPromptLogprobsError when the container gives none)."""
        return parse_lmi(self._invoke(lmi_body(text)))


def _read_json(s3: Any, bucket: str, key: str) -> Any | None:
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in _MISSING:
            return None
        raise


def review_prompts(s3: Any, bucket: str, a: Assignment, limit: int) -> list[str]:
    """The evaluation's review prompts of this run (reports/review.json), the first ``limit``."""
    review = _read_json(s3, bucket, report_key(a.model_name, a.run_id, REVIEW_FILE))
    items = review.get("items") if isinstance(review, dict) else None
    prompts = [str(i["prompt"]) for i in items or [] if isinstance(i, dict) and str(i.get("prompt", "")).strip()]
    if not prompts:
        raise SampleError(f"no prompts: {report_key(a.model_name, a.run_id, REVIEW_FILE)} is missing or has no items")
    return prompts[:limit]


def reference_for(
    a: Assignment, settings: QualitySamplerSettings, clients: Any, now: datetime
) -> tuple[list[ReferenceItem], list[str]]:
    """The run's stored reference, or (during a canary) the baseline's, built and stored once."""
    bucket, key = settings.artifact_bucket, quality_reference_key(a.model_name, a.run_id, a.endpoint)
    stored = _read_json(clients.s3, bucket, key)
    if stored is not None:
        return read_reference(stored)[: settings.max_prompts], []
    if a.reference_variant is None:
        raise SampleError(f"no reference at {key}: the sampler never ran during this run's canary")
    prompts = review_prompts(clients.s3, bucket, a, settings.max_prompts)
    base = LmiVariant(clients.runtime, a.endpoint, a.reference_variant, settings.max_new_tokens)
    items, notes = build_reference(prompts, lambda p: base.generate(p, prompt_logprobs=True), base.score)
    document = reference_document(items, source=f"{a.endpoint}/{a.reference_variant}", created_at=now.isoformat())
    try:
        clients.s3.put_object(
            Bucket=bucket, Key=key, Body=json.dumps(document).encode(), ContentType="application/json", IfNoneMatch="*"
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in _RACE_LOST:
            raise
        # Another run stored it first: everyone judges against the same reference.
        return read_reference(_read_json(clients.s3, bucket, key) or {})[: settings.max_prompts], notes
    return items, notes


def _captured_text(record: dict[str, Any]) -> str:
    """The prompt of a captured request: the last user message of a chat, else the text."""
    if "messages" in record:
        users = [m["content"] for m in record["messages"] if m.get("role") == "user"]
        return str(users[-1]) if users else ""
    return str(record.get("text", ""))


def captured_prompts(
    a: Assignment, settings: QualitySamplerSettings, clients: Any, now: datetime, known: Sequence[str]
) -> list[str]:
    """Up to ``captured_prompts`` distinct recent prompts of the run's capture, none already in ``known``."""
    prefixes = hour_prefixes(a.model_name, a.run_id, a.endpoint, list(a.variants), now=now, hours=1)
    keys = capture_keys(clients.s3, settings.artifact_bucket, prefixes, settings.capture_files)
    seen = set(known)
    prompts: list[str] = []
    for record in read_prompts(clients.s3, settings.artifact_bucket, keys).records:
        text = _captured_text(record).strip()
        if text and framed(text) not in seen:
            seen.add(framed(text))
            prompts.append(text)
        if len(prompts) >= settings.captured_prompts:
            break
    return prompts


def live_reference(
    a: Assignment, settings: QualitySamplerSettings, clients: Any, now: datetime, stored: list[ReferenceItem]
) -> tuple[list[ReferenceItem], list[str]]:
    """The baseline's answers to recent captured prompts (canary on a capturing stage only; not stored)."""
    if a.reference_variant is None or not a.captures or settings.captured_prompts == 0:
        return [], []
    prompts = captured_prompts(a, settings, clients, now, [item.prompt for item in stored])
    if not prompts:
        return [], ["no captured prompts in the last hour: judged on the review prompts only"]
    base = LmiVariant(clients.runtime, a.endpoint, a.reference_variant, settings.max_new_tokens)
    return build_reference(prompts, lambda p: base.generate(p, prompt_logprobs=True), base.score)


def sample_endpoint(a: Assignment, settings: QualitySamplerSettings, clients: Any, now: datetime) -> dict[str, Any]:
    reference, notes = reference_for(a, settings, clients, now)
    live, live_notes = live_reference(a, settings, clients, now, reference)
    reference, notes = reference + live, notes + live_notes
    judged = LmiVariant(clients.runtime, a.endpoint, a.judged_variant, settings.max_new_tokens)
    sample = judge(reference, judged.generate, judged.score)
    data = metric_data(a.endpoint, a.judged_variant, sample, now)
    if data:
        clients.cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=data)
    return {
        "outcome": "published" if data else "nothing-computed",
        "phase": a.phase,
        "variant": a.judged_variant,
        "prompts": sample.prompts,
        "captured_prompts": len(live),
        "scored_tokens": sample.scored_tokens,
        "metrics": sample.values,
        "notes": sorted(set(notes + sample.notes)),
    }


def _endpoint_state(sagemaker: Any, endpoint: str) -> tuple[dict[str, Any], dict[str, str], set[str]]:
    described = sagemaker.describe_endpoint(EndpointName=endpoint)
    tags = sagemaker.list_tags(ResourceArn=described["EndpointArn"]).get("Tags", [])
    variants = {v["VariantName"] for v in described.get("ProductionVariants", [])}
    return described, {t["Key"]: t["Value"] for t in tags}, variants


def sample_one(endpoint: str, settings: QualitySamplerSettings, clients: Any, now: datetime) -> dict[str, Any]:
    """One endpoint's outcome; every failure becomes a reported outcome."""
    try:
        described, tags, variants = _endpoint_state(clients.sagemaker, endpoint)
        a = assignment(endpoint, tags, variants, settings, now)
        if isinstance(a, str):
            return {"outcome": "skipped", "why": a}
        captures = capture_is_ours(described, settings.artifact_bucket, a.model_name, a.run_id)
        a = replace(a, captures=captures, variants=tuple(sorted(variants)))
        return sample_endpoint(a, settings, clients, now)
    except SampleError as exc:
        return {"outcome": "not-sampled", "why": str(exc)}
    except (ClientError, BotoCoreError, ValueError, KeyError) as exc:
        logger.exception("sampling %s failed", endpoint)
        return {"outcome": "failed", "why": f"{type(exc).__name__}: {exc}"}


def sample_all(
    settings: QualitySamplerSettings,
    clients: Any,
    *,
    now: datetime | None = None,
    seconds_left: Callable[[], float] = lambda: float("inf"),
    endpoints: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Every monitored endpoint in turn, while the invocation has time for one more."""
    now = now or datetime.now(UTC)
    results: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints if endpoints is not None else settings.monitored_endpoints:
        if seconds_left() < settings.min_seconds_per_endpoint:
            results[endpoint] = {"outcome": "not-sampled", "why": "the invocation ran out of time"}
            continue
        results[endpoint] = sample_one(endpoint, settings, clients, now)
    return results
