"""The evaluate job's contract: scheme detection, SageMaker hyperparameters, SSE parsing, container, failure files."""

import json
import re
from pathlib import Path

from jobs.evaluate.load_test import SseUsageParser
from jobs.evaluate.models import detect_scheme
from jobs.sagemaker_job.failure import MAX_REASON_BYTES, write_failure
from jobs.sagemaker_job.hyperparameters import hyperparameter_argv
from tests.jobs import image_contents

ROOT = Path(__file__).resolve().parents[3]


def cg(weights, acts=None):
    return {
        "quantization_config": {
            "quant_method": "compressed-tensors",
            "config_groups": {"group_0": {"weights": weights, "input_activations": acts}},
        }
    }


def test_scheme_is_read_from_the_compressed_tensors_config():
    assert detect_scheme({"torch_dtype": "bfloat16"}) == "BF16"
    assert detect_scheme(cg({"num_bits": 8, "type": "int"}, {"num_bits": 8, "type": "int"})) == "W8A8"
    assert detect_scheme(cg({"num_bits": 4, "type": "int", "symmetric": True})) == "W4A16"
    assert detect_scheme(cg({"num_bits": 4, "type": "int", "symmetric": False})) == "W4A16_ASYM"
    assert detect_scheme(cg({"num_bits": 8, "type": "float"}, {"num_bits": 8, "type": "float"})) == "FP8_DYNAMIC"


def test_hyperparameters_json_becomes_arguments(tmp_path):
    (tmp_path / "hyperparameters.json").write_text(
        json.dumps({"max_ppl_increase_pct": "3", "workload-concurrency": 4, "sagemaker_program": "x"})
    )
    assert hyperparameter_argv(tmp_path) == ["--max-ppl-increase-pct", "3", "--workload-concurrency", "4"]
    assert hyperparameter_argv(tmp_path / "missing") == []


def test_sse_stream_in_odd_chunks_yields_ttft_tokens_and_usage():
    events = [
        {"choices": [{"delta": {"role": "assistant"}}]},
        {"choices": [{"delta": {"content": "Hel"}}]},
        {"choices": [{"delta": {"content": "lo"}}]},
        {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}},
    ]
    stream = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    parser = SseUsageParser(started=10.0)
    for i in range(0, len(stream), 7):  # chunk borders fall inside lines
        parser.feed(stream[i : i + 7], now=10.0 + i / 1000)
    parser.close(now=11.0)
    result = parser.result(ended=11.0)
    assert result.text == "Hello"
    assert result.output_tokens == 2 and result.prompt_tokens == 7
    assert result.ttft_s is not None and 0 < result.ttft_s < 1.0
    assert result.latency_s == 1.0


DOCKERFILE = ROOT / "containers" / "evaluate" / "Dockerfile"
REQUIREMENTS = ROOT / "containers" / "evaluate" / "requirements.txt"
# Installed by the base image (the PyTorch training DLC), never by requirements.txt.
FROM_BASE_IMAGE = {"torch"}


def job_modules() -> set[Path]:
    """The evaluate job's package (python -m jobs.evaluate) and every module of ours it imports, transitively."""
    return image_contents.job_imports("jobs.evaluate")[0]


def dockerfile_instructions() -> list[str]:
    return [f"{keyword} {args}" for keyword, args in image_contents.instructions(DOCKERFILE)]


def evaluate_pins() -> dict[str, str]:
    return image_contents.pinned_requirements(REQUIREMENTS)


def test_evaluate_container_builds_from_the_base_image_argument_and_runs_as_root():
    steps = dockerfile_instructions()
    assert steps[0] == "ARG BASE_IMAGE", "declare BASE_IMAGE first and without a default"
    assert [line for line in steps if line.upper().startswith("FROM ")] == ["FROM ${BASE_IMAGE}"]
    assert not re.search(r"dkr\.ecr\.|pytorch/pytorch:|python:\d", "\n".join(steps)), "a base image is hard-coded"
    assert 'ENTRYPOINT ["python3", "-m", "jobs.evaluate"]' in steps
    # SageMaker mounts /opt/ml/processing/* and /opt/ml/output at run time: root writes them.
    users = [line.split()[1] for line in steps if line.startswith("USER ")]
    assert not users or users[-1] in {"root", "0", "0:0"}, users
    assert not [line for line in steps if re.search(r"\b(useradd|adduser)\b", line)]
    assert any(line.startswith("COPY jobs/") for line in steps)
    assert any("requirements.txt" in line for line in steps)


def test_evaluate_image_holds_its_package_and_the_shared_plumbing_but_not_the_pilot_or_the_cli():
    sources = [src for line in dockerfile_instructions() if line.startswith("COPY ") for src in line.split()[1:-1]]
    jobs_sources = [src for src in sources if src.startswith(("jobs", "contracts"))]
    assert jobs_sources and set(jobs_sources) <= {
        "jobs/__init__.py",
        "jobs/evaluate/",
        "jobs/sagemaker_job/",
        "contracts/",
    }, jobs_sources
    assert not [src for src in sources if src.startswith(("stacks", "jobs/pilot")) or src in {"jobs/", "."}], sources
    for path in job_modules():
        relative = path.relative_to(ROOT).as_posix()
        assert any(relative == src or (src.endswith("/") and relative.startswith(src)) for src in jobs_sources), (
            f"{relative} is imported by the evaluate job but not copied into the image"
        )
        assert not relative.startswith("jobs/pilot/"), f"the evaluate job imports the pilot ({relative})"


def test_the_data_files_the_job_reads_are_in_the_image_and_its_build_context():
    """review_page.html (the review page's template) and instance_prices.json are read beside
    their modules: the image copies the whole package, and .dockerignore keeps them."""
    from jobs.evaluate.cost import PRICE_TABLE
    from jobs.evaluate.review_page import TEMPLATE

    sources = image_contents.copied_sources(DOCKERFILE)
    ignored = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if not line.startswith("#")]
    for path in (TEMPLATE, PRICE_TABLE):
        assert path.is_file() and image_contents.is_copied(path, sources), path
        assert not [line for line in ignored if "jobs/evaluate" in line or path.suffix in line], ignored


def test_every_import_is_pinned_and_torch_comes_from_the_base_image():
    pins = evaluate_pins()
    assert pins["litellm"] != "1.107.0"
    assert "torch" not in pins, "pinning torch would make pip replace the base image's CUDA build"
    for module in image_contents.job_imports("jobs.evaluate")[1] - FROM_BASE_IMAGE:
        dists = image_contents.distributions_of(module)
        assert dists & set(pins), f"{module} is imported by the evaluate job but not pinned in requirements.txt"


def test_every_pin_accepts_the_base_images_torch_and_python():
    """The PyTorch DLC of version X ships torch X; py313 is Python 3.13."""
    torch_pins = image_contents.pins_that_constrain_torch(evaluate_pins())
    assert "compressed-tensors" in torch_pins, torch_pins


def test_a_bad_argument_writes_the_failure_file(tmp_path, monkeypatch):
    from jobs.evaluate.job import main

    monkeypatch.setenv("SM_OUTPUT_DIR", str(tmp_path))
    monkeypatch.setenv("SM_INPUT_CONFIG_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("LLMQ_PROCESSING_CONFIG_DIR", str(tmp_path / "not-a-processing-job"))
    assert main(["--max-tokens", "many"]) == 1
    assert "invalid argument: argument --max-tokens" in (tmp_path / "failure").read_text()
    assert not (tmp_path / "message").exists()


def processing_container(tmp_path: Path, monkeypatch) -> Path:
    """What SageMaker Processing provides: /opt/ml/config/processingjobconfig.json."""
    config = tmp_path / "opt-ml-config"
    config.mkdir()
    (config / "processingjobconfig.json").write_text(json.dumps({"ProcessingJobName": "llmq-dev-evaluate-x"}))
    monkeypatch.setenv("LLMQ_PROCESSING_CONFIG_DIR", str(config))
    monkeypatch.setenv("SM_INPUT_CONFIG_DIR", str(tmp_path / "none"))
    monkeypatch.delenv("SM_OUTPUT_DIR", raising=False)
    return tmp_path / "opt-ml-output"


def test_as_a_processing_job_the_reason_goes_to_the_message_file(tmp_path, monkeypatch):
    """ExitMessage is the first 1 KB of /opt/ml/output/message; the pipeline passes --failure-dir."""
    from jobs.evaluate.job import main

    output = processing_container(tmp_path, monkeypatch)
    assert main(["--failure-dir", str(output), "--baseline-dir", str(tmp_path / "missing")]) == 1
    message = (output / "message").read_text(encoding="utf-8")
    assert message.count("\n") == 1 and "missing" in message, message
    assert not (output / "failure").exists(), "a processing job reports through message, not failure"


def test_as_a_processing_job_a_crash_also_goes_to_the_message_file(tmp_path, monkeypatch):
    from jobs.evaluate import job as evaluate

    output = processing_container(tmp_path, monkeypatch)

    def crash(args):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(evaluate, "run_job", crash)
    assert evaluate.main(["--failure-dir", str(output)]) == 2
    assert "internal error: RuntimeError: simulated crash" in (output / "message").read_text(encoding="utf-8")


def test_message_is_one_utf8_line_within_what_sagemaker_keeps(tmp_path):
    path = write_failure("Modèle introuvable\n" + "é" * 2000, tmp_path, processing=True)
    assert path.name == "message"
    data = path.read_bytes()
    assert len(data.rstrip(b"\n")) <= MAX_REASON_BYTES
    text = data.decode("utf-8")  # raises if a character was cut in half
    assert text.count("\n") == 1 and text.startswith("Modèle introuvable é") and text.endswith("...\n")
