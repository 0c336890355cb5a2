"""The quality sampler against moto (SageMaker tags and variants, S3, CloudWatch) and a stubbed runtime.

The runtime is the sampler's own boto3 ``sagemaker-runtime`` client: botocore validates each
InvokeEndpoint against the service model, then a ``before-call`` handler answers it as LMI with
the vLLM rolling batch would (``generated_text``, ``details.prefill`` for ``decoder_input_details``)
from a toy model per variant: words are tokens, every token has log-probability ``-0.5 - bias``.
Every other call goes through tests/aws_conformance (request shapes checked, calls recorded) into moto.
"""

from __future__ import annotations

import io
import json
import sys
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.response import StreamingBody
from moto import mock_aws

from contracts.artifact_layout import REVIEW_FILE, capture_hour_key, capture_key, quality_reference_key, report_key
from contracts.function_settings import QualitySamplerSettings
from contracts.live_quality import framed
from tests.aws_conformance import hook
from tests.aws_conformance.iam import PolicyEvaluator
from tests.contracts.test_data_capture import line
from tests.function_path import LambdaContext
from tests.unit.rollback_world import (
    BUCKET,
    CANDIDATE,
    ENDPOINT,
    MODEL,
    ROOT,
    RUN_ID,
    SERVING,
    build_world,
    load_handler_module,
)

SAMPLER_DIR = ROOT / "lambda" / "quality_sampler"
if str(SAMPLER_DIR) not in sys.path:
    sys.path.insert(0, str(SAMPLER_DIR))

import sampler_logic  # type: ignore[import-not-found]  # noqa: E402  # isort: skip
from function_setup import AwsClients, aws_client  # type: ignore[import-not-found]  # noqa: E402  # isort: skip

PROMPTS = ["Name a colour.", "Count to three.", "Say hello."]
# What each variant writes, by the text it is sent (the prompt in the sampler's frame).
OUTPUTS = {
    framed("Name a colour."): " Blue is a colour.",
    framed("Count to three."): " one two three",
    framed("Say hello."): " Hello there!",
}


def _ids(text: str) -> list[int]:
    return [zlib.crc32(word.encode()) % 50000 for word in text.split()]


@dataclass
class ToyVariant:
    outputs: dict[str, str]
    bias: float = 0.0
    fail: str | None = None  # an error code the runtime answers every request with
    logprobs: bool = True


@dataclass
class StubRuntime:
    """Answers InvokeEndpoint per (endpoint, TargetVariant); records every request body."""

    variants: dict[tuple[str, str], ToyVariant]
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> Any:
        endpoint = params["url_path"].split("/")[2]
        variant = params["headers"]["X-Amzn-SageMaker-Target-Variant"]
        body = json.loads(params["body"])
        self.requests.append((endpoint, variant, body))
        toy = self.variants[(endpoint, variant)]
        if toy.fail:
            error = {"Error": {"Code": toy.fail, "Message": "Received server error (500) from primary"}}
            return _http(424), error
        text = body["inputs"]
        answer: dict[str, Any] = {"generated_text": toy.outputs.get(text, " ok"), "details": {}}
        params_in = body["parameters"]
        if params_in.get("decoder_input_details") and toy.logprobs:
            ids = _ids(text)
            answer["details"]["prefill"] = [{"id": ids[0], "text": "", "log_prob": None}] + [
                {"id": i, "text": "", "log_prob": -0.5 - toy.bias} for i in ids[1:]
            ]
        data = json.dumps(answer).encode()
        parsed = {"Body": StreamingBody(io.BytesIO(data), len(data)), "ContentType": "application/json"}
        return _http(200), parsed


def _http(status: int) -> Any:
    return type("Http", (), {"status_code": status, "headers": {}, "content": b""})()


@dataclass
class SamplerWorld:
    world: Any
    runtime: StubRuntime
    calls: list[hook.CallRecord]
    settings: Any

    def review(self, prompts: list[str] = PROMPTS) -> None:
        items = [{"id": f"p{i}", "prompt": p, "baseline": "", "candidate": ""} for i, p in enumerate(prompts)]
        body = json.dumps({"review_version": 1, "items": items}).encode()
        self.world.s3.put_object(Bucket=BUCKET, Key=report_key(MODEL, RUN_ID, REVIEW_FILE), Body=body)

    def published(self) -> list[dict[str, Any]]:
        return [c.params for c in self.calls if c.operation == "PutMetricData"]

    def sample(self, now: datetime | None = None, endpoints: list[str] | None = None) -> dict[str, Any]:
        with hook.acting_as(ANYONE):
            result: dict[str, Any] = sampler_logic.sample_all(
                self.settings, AwsClients(), now=now, endpoints=endpoints or [ENDPOINT]
            )
        return result


ANYONE = PolicyEvaluator([{"Effect": "Allow", "Action": "*", "Resource": "*"}], name="sampler")


@pytest.fixture
def sampler(monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "ARTIFACT_BUCKET": BUCKET,
        "MONITORED_ENDPOINTS": json.dumps([ENDPOINT]),
        "SERVING_VARIANT": SERVING,
        "MAX_NEW_TOKENS": "16",
        "SAMPLE_AFTER_PROMOTION_SECONDS": "3600",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "quality_sampler",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    aws_client.cache_clear()
    with mock_aws():
        calls: list[hook.CallRecord] = []
        hook.install(monkeypatch, record=calls)
        runtime = StubRuntime(
            {(ENDPOINT, SERVING): ToyVariant(OUTPUTS), (ENDPOINT, CANDIDATE): ToyVariant(OUTPUTS, bias=0.05)}
        )
        client = aws_client("sagemaker-runtime")
        client.meta.events.register("before-call.sagemaker-runtime.InvokeEndpoint", runtime)
        yield SamplerWorld(build_world(), runtime, calls, QualitySamplerSettings.from_environment())
    aws_client.cache_clear()


def _values(data: list[dict[str, Any]]) -> dict[str, tuple[float, str, list[dict[str, str]]]]:
    return {d["MetricName"]: (d["Value"], d["Unit"], d["Dimensions"]) for d in data}


def test_a_canary_stores_the_baselines_reference_then_publishes_the_candidates_metrics(sampler):
    sampler.world.deploy(phase="canary")
    sampler.review()
    result = sampler.sample()[ENDPOINT]
    assert result["outcome"] == "published" and result["variant"] == CANDIDATE, result
    [call] = sampler.published()
    assert call["Namespace"] == "LLMQ/Quality"
    values = _values(call["MetricData"])
    dims = [{"Name": "EndpointName", "Value": ENDPOINT}, {"Name": "VariantName", "Value": CANDIDATE}]
    assert values["GreedyAgreementPercent"] == (100.0, "Percent", dims)
    assert values["EmptyOrRefusalPercent"] == (0.0, "Percent", dims)
    assert values["OutputLengthRatio"] == (1.0, "None", dims)
    increase, unit, _ = values["PerplexityIncreasePercent"]
    assert unit == "Percent" and increase == pytest.approx(100 * (2.718281828459045**0.05 - 1))
    # The reference came from the serving variant (generation with prompt scores, then prompt + output).
    stored = json.loads(
        sampler.world.s3.get_object(Bucket=BUCKET, Key=quality_reference_key(MODEL, RUN_ID, ENDPOINT))["Body"].read()
    )
    assert [i["prompt"] for i in stored["items"]] == [framed(p) for p in PROMPTS]
    assert [i["output"] for i in stored["items"]] == [OUTPUTS[framed(p)] for p in PROMPTS]
    by_variant = [(v, b["parameters"]["max_new_tokens"]) for _, v, b in sampler.runtime.requests]
    assert by_variant.count((SERVING, 16)) == 3 and by_variant.count((SERVING, 1)) == 3
    assert by_variant.count((CANDIDATE, 16)) == 3 and by_variant.count((CANDIDATE, 1)) == 3

    # The next run reuses the stored reference: only the candidate is invoked.
    sampler.runtime.requests.clear()
    assert sampler.sample()[ENDPOINT]["outcome"] == "published"
    assert {v for _, v, _ in sampler.runtime.requests} == {CANDIDATE}


def test_after_promotion_the_serving_variant_is_judged_against_the_stored_reference_within_the_window(sampler):
    sampler.world.deploy(phase="canary")
    sampler.review()
    sampler.sample()
    sampler.world.sagemaker.delete_endpoint(EndpointName=ENDPOINT)
    sampler.world.deploy(phase="promoted")
    sampler.runtime.variants[(ENDPOINT, SERVING)] = ToyVariant(OUTPUTS, bias=0.05)  # the promoted model
    sampler.calls.clear()
    result = sampler.sample()[ENDPOINT]
    assert result["outcome"] == "published" and result["variant"] == SERVING
    dims = _values(sampler.published()[0]["MetricData"])["PerplexityIncreasePercent"][2]
    assert dims[1] == {"Name": "VariantName", "Value": SERVING}
    later = datetime.now(UTC) + timedelta(hours=2)
    assert sampler.sample(now=later)[ENDPOINT]["outcome"] == "skipped"


def test_promoted_without_a_reference_and_other_phases_publish_nothing(sampler):
    sampler.world.deploy(phase="promoted")
    result = sampler.sample()[ENDPOINT]
    assert result["outcome"] == "not-sampled" and "never ran during this run's canary" in result["why"]
    sampler.world.sagemaker.delete_endpoint(EndpointName=ENDPOINT)
    sampler.world.deploy(phase="canary", tags={"llmq:phase": "evaluating"})
    assert sampler.sample()[ENDPOINT] == {"outcome": "skipped", "why": "phase evaluating: not sampled"}
    assert sampler.published() == []
    assert sampler.runtime.requests == []


def test_a_failing_candidate_or_a_missing_endpoint_does_not_stop_the_others(sampler):
    sampler.world.deploy(phase="canary")
    sampler.review()
    sampler.runtime.variants[(ENDPOINT, CANDIDATE)] = ToyVariant(OUTPUTS, fail="ModelError")
    results = sampler.sample(endpoints=["llmq-dev-gone", ENDPOINT])
    assert results["llmq-dev-gone"]["outcome"] == "failed"
    assert results[ENDPOINT]["outcome"] == "not-sampled" and "ModelError" in results[ENDPOINT]["why"]
    assert sampler.published() == []


def test_without_logprobs_the_rest_is_published_and_the_reason_reported(sampler):
    sampler.world.deploy(phase="canary")
    sampler.review()
    sampler.runtime.variants[(ENDPOINT, SERVING)] = ToyVariant(OUTPUTS, logprobs=False)
    result = sampler.sample()[ENDPOINT]
    assert result["outcome"] == "published"
    assert "PerplexityIncreasePercent" not in result["metrics"]
    assert any("log-probabilities" in note for note in result["notes"])
    assert set(_values(sampler.published()[0]["MetricData"])) == {
        "GreedyAgreementPercent",
        "EmptyOrRefusalPercent",
        "OutputLengthRatio",
    }


def test_a_canary_without_review_prompts_is_reported(sampler):
    sampler.world.deploy(phase="canary")
    result = sampler.sample()[ENDPOINT]
    assert result["outcome"] == "not-sampled" and "review.json" in result["why"]


def test_the_handler_samples_every_monitored_endpoint(sampler, capsys):
    sampler.world.deploy(phase="canary")
    sampler.review()

    with hook.acting_as(ANYONE):
        out = load_handler_module(SAMPLER_DIR).handler(
            {"source": "aws.events", "detail-type": "Scheduled Event"}, LambdaContext("llmq-dev-quality-sampler")
        )
    assert out["endpoints"][ENDPOINT]["outcome"] == "published"
    assert '"quality sample"' in capsys.readouterr().out


def _capture(sampler: SamplerWorld, variant: str, bodies: list[dict[str, Any]], hour: datetime) -> None:
    key = capture_hour_key(MODEL, RUN_ID, ENDPOINT, variant, hour) + "capture.jsonl"
    sampler.world.s3.put_object(Bucket=BUCKET, Key=key, Body="\n".join(line(b) for b in bodies).encode())


CAPTURE = {
    "EnableCapture": True,
    "InitialSamplingPercentage": 20,
    "DestinationS3Uri": f"s3://{BUCKET}/{capture_key(MODEL, RUN_ID)}",
    "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
}


def test_a_capturing_canary_adds_recent_captured_prompts_answered_by_the_baseline_now(sampler, monkeypatch):
    monkeypatch.setattr(sampler, "settings", sampler.settings.model_copy(update={"captured_prompts": 2}))
    sampler.world.deploy(phase="canary", capture=CAPTURE)
    sampler.review()
    now = datetime.now(UTC)
    chat = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]}
    # A chat repeating a review prompt, a duplicate, and two new ones: the newest hour is read first.
    _capture(sampler, SERVING, [chat, {"inputs": "Tell a joke."}, {"inputs": "Tell a joke."}], now)
    _capture(sampler, CANDIDATE, [{"inputs": "Spell cat."}, {"inputs": "Ignored: the limit is 2."}], now)
    _capture(sampler, SERVING, [{"inputs": "From the hour before."}], now - timedelta(hours=1))
    result = sampler.sample(now=now)[ENDPOINT]
    assert result["outcome"] == "published" and result["captured_prompts"] == 2, result
    assert result["prompts"] == len(PROMPTS) + 2
    sent = {(v, b["inputs"]) for _, v, b in sampler.runtime.requests if b["parameters"]["max_new_tokens"] == 16}
    for prompt in ("Tell a joke.", "Spell cat."):
        assert {(SERVING, framed(prompt)), (CANDIDATE, framed(prompt))} <= sent
    assert not any("Ignored" in text or "hour before" in text for _, text in sent)
    # Not stored: the reference holds the review prompts only.
    stored = json.loads(
        sampler.world.s3.get_object(Bucket=BUCKET, Key=quality_reference_key(MODEL, RUN_ID, ENDPOINT))["Body"].read()
    )
    assert [i["prompt"] for i in stored["items"]] == [framed(p) for p in PROMPTS]


def test_captured_prompts_are_not_read_without_capture_into_the_run_or_when_switched_off(sampler, monkeypatch):
    sampler.world.deploy(phase="canary", capture={**CAPTURE, "DestinationS3Uri": f"s3://{BUCKET}/elsewhere/"})
    sampler.review()
    now = datetime.now(UTC)
    _capture(sampler, SERVING, [{"inputs": "Tell a joke."}], now)
    monkeypatch.setattr(sampler, "settings", sampler.settings.model_copy(update={"captured_prompts": 2}))
    assert sampler.sample(now=now)[ENDPOINT]["captured_prompts"] == 0
    sampler.world.sagemaker.delete_endpoint(EndpointName=ENDPOINT)
    sampler.world.deploy(phase="canary", capture=CAPTURE)
    monkeypatch.setattr(sampler, "settings", sampler.settings.model_copy(update={"captured_prompts": 0}))
    assert sampler.sample(now=now)[ENDPOINT]["captured_prompts"] == 0
    assert not any("joke" in b["inputs"] for _, _, b in sampler.runtime.requests)
