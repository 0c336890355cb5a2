"""The evaluate job's contract: scheme detection, SageMaker hyperparameters, SSE parsing, container, failure files."""

import ast
import json
import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from jobs.evaluate.load_test import SseUsageParser
from jobs.evaluate.models import detect_scheme
from jobs.sagemaker_job.failure import MAX_REASON_BYTES, write_failure
from jobs.sagemaker_job.hyperparameters import hyperparameter_argv
from stacks.config import ImageVersions

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


# import name -> distribution name, where they differ
DIST = {"yaml": "pyyaml"}
STDLIB_OR_LOCAL = {"jobs", "contracts"}
# Installed by the base image (the PyTorch training DLC), never by requirements.txt.
FROM_BASE_IMAGE = {"torch"}


def third_party_imports(files):
    import sys

    names = set()
    for file in files:
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in STDLIB_OR_LOCAL and n != "__future__"}


def module_files(module: str) -> list[Path]:
    """A module's .py, or a package's __init__.py and __main__.py; empty for an attribute's name."""
    base = ROOT / module.replace(".", "/")
    if base.with_suffix(".py").is_file():
        return [base.with_suffix(".py")]
    return [p for p in (base / "__init__.py", base / "__main__.py") if p.is_file()]


def job_modules():
    """The evaluate job's package (python -m jobs.evaluate) and every jobs module it imports, transitively."""
    seen, files, todo = set(), set(), ["jobs.evaluate"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run first
        for path in module_files(module):
            files.add(path)
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(("jobs", "contracts")):
                    todo += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return files


def dockerfile_instructions() -> list[str]:
    text = re.sub(r"\\\n", " ", (ROOT / "containers/evaluate/Dockerfile").read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def evaluate_pins() -> dict[str, str]:
    pins = {}
    for raw in (ROOT / "containers/evaluate/requirements.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"unpinned requirement: {line}"
            pins[name.lower().replace("_", "-")] = version
    return pins


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


def test_every_import_is_pinned_and_torch_comes_from_the_base_image():
    pins = evaluate_pins()
    assert pins["litellm"] != "1.107.0"
    assert "torch" not in pins, "pinning torch would make pip replace the base image's CUDA build"
    for module in third_party_imports(job_modules()) - FROM_BASE_IMAGE:
        dist = DIST.get(module, module).lower().replace("_", "-")
        assert dist in pins, f"{module} is imported by the evaluate job but not pinned in requirements.txt"


def test_every_pin_accepts_the_base_images_torch_and_python():
    """The PyTorch DLC of version X ships torch X; py313 is Python 3.13."""
    images = ImageVersions()
    torch_version = images.training_version
    py = images.training_py_version.removeprefix("py")
    python_version = f"{py[0]}.{py[1:]}"
    torch_pins = []
    for dist in evaluate_pins():
        requires_python = metadata.metadata(dist)["Requires-Python"]
        if requires_python:
            assert SpecifierSet(requires_python).contains(python_version), f"{dist} needs Python {requires_python}"
        for raw in metadata.requires(dist) or []:
            requirement = Requirement(raw)
            if requirement.name.lower() == "torch" and requirement.marker is None:
                torch_pins.append(dist)
                assert requirement.specifier.contains(torch_version), f"{dist} needs torch{requirement.specifier}"
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
