"""Perplexity through the serving engine: the prompt log-probabilities each variant returns.

The candidate is judged with the kernels that will serve it, not with transformers' emulation
of its scheme. Each validation document is cut into text chunks of at most ``chunk_chars``
characters (at line or word boundaries); each chunk is sent once as a prompt with one output
token, and the server returns the log-probability of every prompt token given the tokens
before it in the chunk. Perplexity = exp(-sum of those log-probabilities / tokens scored); the
first token of a chunk has no context and is not scored. Chunks are scored in order until
``max_tokens`` tokens are scored; the candidate scores exactly the chunks the baseline scored,
and the two must report the same token ids (they share a tokenizer).

The request and response shapes, ``openai`` (vLLM's server, the pilot) and ``lmi`` (SageMaker's
LMI container, the pipeline), are in contracts/serving_protocol.py.

``jobs.sagemaker_job.perplexity.chunk_perplexity`` computes the same figure with transformers,
the pilot's cross-check.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from contracts.serving_protocol import (
    NoPromptLogprobsError,
    PromptScore,
    lmi_body,
    openai_body,
    parse_lmi,
    parse_openai,
)
from jobs.evaluate.load_test import Target, runtime_client
from jobs.sagemaker_job.failure import JobFailureError

# About 250 tokens of English: fits the pilot's 512-token servers with room for code-like text.
DEFAULT_CHUNK_CHARS = 1000
DEFAULT_PARALLEL = 4
REQUEST_TIMEOUT_S = 120.0
METHOD = "serving engine: prompt log-probabilities of text chunks (first token of each chunk unscored)"

Log = Callable[[str], None]


class NoLogprobsError(JobFailureError):
    """The server answered without prompt log-probabilities."""


# One chunk's score: the serving protocol's PromptScore.
ChunkScore = PromptScore


def text_chunks(texts: Sequence[str], max_chars: int) -> list[str]:
    """Every document cut into pieces of at most ``max_chars``, at a line break, else a space."""
    if max_chars < 16:
        raise ValueError(f"chunk size must be >= 16 characters, got {max_chars}")
    chunks: list[str] = []
    for text in texts:
        rest = text.strip()
        while rest:
            if len(rest) <= max_chars:
                chunks.append(rest)
                break
            cut = rest.rfind("\n", 0, max_chars)
            if cut < max_chars // 2:
                cut = rest.rfind(" ", 0, max_chars)
            if cut < max_chars // 2:
                cut = max_chars
            piece, rest = rest[:cut].strip(), rest[cut:].strip()
            if piece:
                chunks.append(piece)
    return chunks


def _score_openai(target: Target, chunk: str) -> ChunkScore:
    return _named(target, parse_openai, post_completion(target, openai_body(target.model, chunk)))


def post_completion(target: Target, body: dict[str, Any]) -> Any:
    """One ``/v1/completions`` request to an OpenAI-compatible server (the pilot's vLLM)."""
    if not str(target.api_base).startswith(("http://", "https://")):
        raise JobFailureError(f"{target.describe()}: the server URL must be http(s)")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        f"{target.api_base}/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as resp:  # noqa: S310 - checked above
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise JobFailureError(
            f"{target.describe()} refused a completions request (HTTP {exc.code}): {detail}"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise JobFailureError(f"{target.describe()} did not answer a completions request: {exc}") from None
    return answer


def _named(target: Target, parse: Callable[[Any], ChunkScore], answer: Any) -> ChunkScore:
    try:
        return parse(answer)
    except NoPromptLogprobsError as exc:
        raise NoLogprobsError(f"{target.describe()} returned no prompt log-probabilities: {exc}") from None


def _score_lmi(target: Target, chunk: str, client: Any) -> ChunkScore:
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    kwargs: dict[str, Any] = {
        "EndpointName": target.model,
        "ContentType": "application/json",
        "Accept": "application/json",
        "Body": json.dumps(lmi_body(chunk)).encode(),  # max_new_tokens 1, prompt log-probabilities
    }
    if target.target_variant:
        kwargs["TargetVariant"] = target.target_variant
    try:
        response = client.invoke_endpoint(**kwargs)
        answer = json.loads(response["Body"].read())
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise JobFailureError(
            f"{target.describe()} refused a prompt-logprobs request: {error.get('Code')}: {error.get('Message')}"
        ) from None
    except (BotoCoreError, ValueError) as exc:
        raise JobFailureError(f"{target.describe()} did not answer a prompt-logprobs request: {exc}") from None
    return _named(target, parse_lmi, answer)


def chunk_scorer(target: Target, protocol: str) -> Callable[[str], ChunkScore]:
    """The one-chunk request for this target and protocol."""
    if target.kind == "openai":
        return lambda chunk: _score_openai(target, chunk)
    if protocol != "lmi":
        raise JobFailureError(f"serving protocol {protocol!r} is not supported for SageMaker targets (lmi)")
    client = runtime_client(target.region)
    return lambda chunk: _score_lmi(target, chunk, client)


def score_chunks(
    target: Target,
    chunks: Sequence[str],
    *,
    max_tokens: int | None,
    protocol: str = "lmi",
    parallel: int = DEFAULT_PARALLEL,
    log: Log = print,
) -> tuple[list[ChunkScore], float]:
    """Score chunks in order, ``parallel`` at a time, until ``max_tokens`` tokens are scored (None: all)."""
    budget = max_tokens if max_tokens is not None else math.inf
    score = chunk_scorer(target, protocol)
    scores: list[ChunkScore] = []
    scored = 0
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        for first in range(0, len(chunks), max(1, parallel)):
            batch = chunks[first : first + parallel]
            for result in pool.map(score, batch):
                if scored >= budget:
                    break
                scores.append(result)
                scored += len(result.token_ids)
            if scored >= budget:
                break
    log(f"  engine perplexity {target.variant}: {scored} tokens in {len(scores)} chunks")
    if not scored:
        raise JobFailureError(f"{target.describe()}: the validation chunks gave no token to score")
    return scores, time.perf_counter() - started


def summarize_scores(scores: Sequence[ChunkScore], seconds: float, chunk_chars: int) -> dict[str, Any]:
    """``perplexity``'s shape (jobs/sagemaker_job/perplexity.py), with this method's parameters."""
    total = sum(sum(s.logprobs) for s in scores)
    count = sum(len(s.logprobs) for s in scores)
    mean = -total / count
    return {
        "perplexity": math.exp(mean),
        "mean_nll": mean,
        "token_count": count,
        "window": None,
        "stride": None,
        "chunks": len(scores),
        "chunk_chars": chunk_chars,
        "method": METHOD,
        "seconds": seconds,
    }


def engine_fidelity(
    targets: dict[str, Target],
    texts: Sequence[str],
    *,
    max_tokens: int,
    chunk_chars: int = DEFAULT_CHUNK_CHARS,
    protocol: str = "lmi",
    log: Log = print,
) -> dict[str, dict[str, Any]]:
    """Perplexity of every target on the same chunks, baseline first: ``{variant: measure}``.

    Each value has ``measure_model_fidelity``'s shape (``perplexity``, ``validation_tokens``),
    so ``fidelity_section`` judges either.
    """
    chunks = text_chunks(texts, chunk_chars)
    if not chunks:
        raise JobFailureError("the validation set has no text to score")
    order = ["baseline", *(name for name in targets if name != "baseline")]
    out: dict[str, dict[str, Any]] = {}
    reference: list[ChunkScore] | None = None
    for name in order:
        use = chunks if reference is None else chunks[: len(reference)]
        budget = max_tokens if reference is None else None  # the candidate scores the baseline's chunks
        scores, seconds = score_chunks(targets[name], use, max_tokens=budget, protocol=protocol, log=log)
        if reference is not None:
            _check_same_tokens(name, reference, scores)
        else:
            reference = scores
        measure = summarize_scores(scores, seconds, chunk_chars)
        out[name] = {"perplexity": measure, "greedy": None, "validation_tokens": measure["token_count"]}
    return out


def _check_same_tokens(name: str, reference: Sequence[ChunkScore], scores: Sequence[ChunkScore]) -> None:
    for index, (a, b) in enumerate(zip(reference, scores, strict=True)):
        if a.token_ids != b.token_ids:
            raise JobFailureError(
                f"{name} tokenized validation chunk {index} differently from the baseline "
                f"({len(b.token_ids)} vs {len(a.token_ids)} tokens): the variants must share a tokenizer"
            )
