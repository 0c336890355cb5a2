"""Closed-loop load test of one serving target at fixed concurrency levels.

Two kinds of target:
- ``openai``: an OpenAI-compatible server (the pilot's local vLLM), through LiteLLM
  (``hosted_vllm/<served name>``), streamed so time to first token is measured, with the
  server's own token usage.
- ``sagemaker``: a SageMaker endpoint. Without a production variant, through LiteLLM
  (``sagemaker_chat/<endpoint>``). LiteLLM has no TargetVariant parameter, so a single variant
  of a canary endpoint (baseline or candidate) is measured with boto3
  ``invoke_endpoint_with_response_stream(TargetVariant=...)`` and the same OpenAI chat body,
  whose server-sent events are parsed here.

Each level first sends warm-up requests whose results are discarded, then ``requests`` more
with at most ``concurrency`` in flight; the level's wall time runs from the first measured
request sent to the last answer received.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from jobs.evaluate.stats import LevelSummary, RequestResult, summarize

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-map download at import

DEFAULT_MAX_TOKENS = 32
DEFAULT_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Target:
    """Where one variant is served."""

    variant: str
    kind: str  # "openai" or "sagemaker"
    model: str  # served model name (openai) or endpoint name (sagemaker)
    api_base: str | None = None
    target_variant: str | None = None
    region: str | None = None

    def describe(self) -> str:
        if self.kind == "openai":
            return f"{self.api_base} ({self.model})"
        suffix = f" variant {self.target_variant}" if self.target_variant else ""
        return f"SageMaker endpoint {self.model}{suffix}"


class SseUsageParser:
    """Incremental parser of an OpenAI chat stream (server-sent events or JSON lines) in arbitrary byte chunks.

    Records when the first content arrives and the usage the server reports in its last event.
    """

    def __init__(self, started: float) -> None:
        self.started = started
        self.buffer = b""
        self.first_token_at: float | None = None
        self.completion_tokens: int | None = None
        self.prompt_tokens: int | None = None
        self.text_parts: list[str] = []
        self.content_events = 0

    def feed(self, data: bytes, now: float) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self._line(line.strip(), now)

    def close(self, now: float) -> None:
        if self.buffer.strip():
            self._line(self.buffer.strip(), now)
        self.buffer = b""

    def _line(self, line: bytes, now: float) -> None:
        # Server-sent events ("data: {...}", vLLM and LMI with the sse formatter) or JSON lines
        # ("{...}", LMI's default for a streamed chat request).
        if line.startswith(b"data:"):
            line = line[5:].strip()
        if not line.startswith(b"{"):
            return
        event = json.loads(line)
        for choice in event.get("choices") or []:
            content = (choice.get("delta") or {}).get("content")
            if content:
                if self.first_token_at is None:
                    self.first_token_at = now
                self.text_parts.append(content)
                self.content_events += 1
        usage = event.get("usage")
        if usage:
            self.completion_tokens = int(usage.get("completion_tokens") or 0)
            self.prompt_tokens = int(usage.get("prompt_tokens") or 0)

    def result(self, ended: float) -> RequestResult:
        tokens = self.completion_tokens if self.completion_tokens is not None else self.content_events
        return RequestResult(
            ok=True,
            latency_s=ended - self.started,
            ttft_s=None if self.first_token_at is None else self.first_token_at - self.started,
            output_tokens=tokens,
            prompt_tokens=self.prompt_tokens or 0,
            text="".join(self.text_parts),
        )


def chat_body(prompt: str, max_tokens: int, fixed_length: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if fixed_length:
        body["ignore_eos"] = True
    return body


async def _openai_request(
    target: Target, prompt: str, max_tokens: int, fixed_length: bool, timeout: float
) -> RequestResult:
    import litellm  # noqa: PLC0415

    started = time.perf_counter()
    first: float | None = None
    tokens: int | None = None
    prompt_tokens = 0
    parts: list[str] = []
    chunks = 0
    try:
        stream = await litellm.acompletion(
            model=f"hosted_vllm/{target.model}",
            api_base=target.api_base,
            api_key="not-needed",
            messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens,
            temperature=0.0,
            stream=True,
            stream_options={"include_usage": True},
            # Same output length on both variants, so tokens/s compares like with like.
            extra_body={"ignore_eos": True} if fixed_length else None,
            timeout=timeout,
        )
        async for chunk in stream:
            choices = getattr(chunk, "choices", None) or []
            for choice in choices:
                content = getattr(getattr(choice, "delta", None), "content", None)
                if content:
                    if first is None:
                        first = time.perf_counter()
                    parts.append(content)
                    chunks += 1
            usage = getattr(chunk, "usage", None)
            if usage and getattr(usage, "completion_tokens", None):
                tokens = int(usage.completion_tokens)
                prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
    except Exception as exc:
        return RequestResult(ok=False, latency_s=time.perf_counter() - started, error=_short(exc))
    ended = time.perf_counter()
    return RequestResult(
        ok=True,
        latency_s=ended - started,
        ttft_s=None if first is None else first - started,
        output_tokens=tokens if tokens is not None else chunks,
        prompt_tokens=prompt_tokens,
        text="".join(parts),
    )


_CLIENT_LOCK = threading.Lock()


@functools.cache
def _runtime_client_unlocked(region: str | None) -> Any:
    import boto3  # noqa: PLC0415

    return boto3.client("sagemaker-runtime", region_name=region)


def runtime_client(region: str | None) -> Any:
    """One SageMaker runtime client per region for the whole job: clients are thread-safe,
    creating them is not (boto3's default session), and each costs tens of milliseconds."""
    with _CLIENT_LOCK:
        return _runtime_client_unlocked(region)


def _sagemaker_variant_request(target: Target, prompt: str, max_tokens: int, fixed_length: bool) -> RequestResult:
    client = runtime_client(target.region)
    started = time.perf_counter()
    parser = SseUsageParser(started)
    try:
        response = client.invoke_endpoint_with_response_stream(
            EndpointName=target.model,
            TargetVariant=target.target_variant,
            ContentType="application/json",
            Accept="text/event-stream",
            Body=json.dumps(chat_body(prompt, max_tokens, fixed_length)).encode(),
        )
        for event in response["Body"]:
            part = event.get("PayloadPart")
            if part:
                parser.feed(part["Bytes"], time.perf_counter())
            elif event.get("ModelStreamError") or event.get("InternalStreamFailure"):
                raise RuntimeError(str(event))
        ended = time.perf_counter()
        parser.close(ended)
    except Exception as exc:
        return RequestResult(ok=False, latency_s=time.perf_counter() - started, error=_short(exc))
    return parser.result(ended)


async def _sagemaker_litellm_request(target: Target, prompt: str, max_tokens: int, timeout: float) -> RequestResult:
    import litellm  # noqa: PLC0415

    started = time.perf_counter()
    first: float | None = None
    tokens = 0
    try:
        stream = await litellm.acompletion(
            model=f"sagemaker_chat/{target.model}",
            aws_region_name=target.region,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens,
            temperature=0.0,
            stream=True,
            stream_options={"include_usage": True},
            timeout=timeout,
        )
        async for chunk in stream:
            for choice in getattr(chunk, "choices", None) or []:
                if getattr(getattr(choice, "delta", None), "content", None) and first is None:
                    first = time.perf_counter()
            usage = getattr(chunk, "usage", None)
            if usage and getattr(usage, "completion_tokens", None):
                tokens = int(usage.completion_tokens)
    except Exception as exc:
        return RequestResult(ok=False, latency_s=time.perf_counter() - started, error=_short(exc))
    ended = time.perf_counter()
    return RequestResult(
        ok=True, latency_s=ended - started, ttft_s=None if first is None else first - started, output_tokens=tokens
    )


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."


async def one_request(
    target: Target, prompt: str, max_tokens: int, fixed_length: bool, timeout: float = DEFAULT_TIMEOUT_S
) -> RequestResult:
    if target.kind == "openai":
        return await _openai_request(target, prompt, max_tokens, fixed_length, timeout)
    if target.kind == "sagemaker" and target.target_variant:
        return await asyncio.to_thread(_sagemaker_variant_request, target, prompt, max_tokens, fixed_length)
    if target.kind == "sagemaker":
        return await _sagemaker_litellm_request(target, prompt, max_tokens, timeout)
    raise ValueError(f"unknown target kind {target.kind!r}")


async def _run_batch(
    target: Target,
    *,
    prompts: Sequence[str],
    count: int,
    concurrency: int,
    max_tokens: int,
    fixed_length: bool,
    timeout: float,
    on_done: Callable[[], None] | None = None,
) -> tuple[list[RequestResult], float]:
    gate = asyncio.Semaphore(concurrency)

    async def worker(index: int) -> RequestResult:
        async with gate:
            result = await one_request(target, prompts[index % len(prompts)], max_tokens, fixed_length, timeout)
        if on_done:
            on_done()
        return result

    start = time.perf_counter()
    results = await asyncio.gather(*(worker(i) for i in range(count)))
    return list(results), time.perf_counter() - start


def run_level(
    target: Target,
    *,
    concurrency: int,
    requests: int,
    warmup: int,
    prompts: Sequence[str],
    max_tokens: int = DEFAULT_MAX_TOKENS,
    fixed_length: bool = True,
    timeout: float = DEFAULT_TIMEOUT_S,
    on_done: Callable[[], None] | None = None,
) -> LevelSummary:
    """Warm up, then measure ``requests`` requests at ``concurrency`` in flight."""
    if concurrency < 1 or requests < 1 or warmup < 0:
        raise ValueError("concurrency and requests must be >= 1 and warmup >= 0")
    if warmup:
        asyncio.run(
            _run_batch(
                target,
                prompts=prompts,
                count=warmup,
                concurrency=concurrency,
                max_tokens=max_tokens,
                fixed_length=fixed_length,
                timeout=timeout,
            )
        )
    results, wall = asyncio.run(
        _run_batch(
            target,
            prompts=prompts,
            count=requests,
            concurrency=concurrency,
            max_tokens=max_tokens,
            fixed_length=fixed_length,
            timeout=timeout,
            on_done=on_done,
        )
    )
    return summarize(concurrency, results, wall)


def quiet_litellm() -> None:
    """LiteLLM prints feedback banners on errors; the report carries the errors instead."""
    import litellm  # noqa: PLC0415

    litellm.suppress_debug_info = True
    litellm.telemetry = False
