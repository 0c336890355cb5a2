"""The evaluate job's contract: scheme detection, SageMaker hyperparameters, SSE parsing, container."""

import ast
import json
import re
from pathlib import Path

from jobs.evaluate import detect_scheme, hyperparameter_argv
from jobs.load_test import SseUsageParser

ROOT = Path(__file__).resolve().parents[2]


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
STDLIB_OR_LOCAL = {"jobs"}


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


def job_modules():
    """jobs/evaluate.py and every jobs module it imports, transitively."""
    seen, todo = set(), [ROOT / "jobs" / "evaluate.py"]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jobs."):
                todo.append(ROOT / "jobs" / (node.module.split(".", 1)[1] + ".py"))
    return seen


def test_evaluate_container_runs_the_job_as_non_root_with_every_import_pinned():
    dockerfile = (ROOT / "containers/evaluate/Dockerfile").read_text()
    assert re.search(r"^FROM python:\d+\.\d+\.\d+-slim-\w+$", dockerfile, re.M), "base image must be pinned"
    assert 'ENTRYPOINT ["python", "-m", "jobs.evaluate"]' in dockerfile
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1] not in {"root", "0"}
    assert "COPY jobs/" in dockerfile and "requirements.txt" in dockerfile

    pins = {}
    for raw in (ROOT / "containers/evaluate/requirements.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"unpinned requirement: {line}"
            pins[name.lower().replace("_", "-")] = version
    assert pins["litellm"] != "1.107.0"
    for module in third_party_imports(job_modules()):
        dist = DIST.get(module, module).lower().replace("_", "-")
        assert dist in pins, f"{module} is imported by the evaluate job but not pinned in requirements.txt"


def test_a_bad_argument_writes_the_failure_file(tmp_path, monkeypatch):
    from jobs.evaluate import main

    monkeypatch.setenv("SM_OUTPUT_DIR", str(tmp_path))
    monkeypatch.setenv("SM_INPUT_CONFIG_DIR", str(tmp_path / "none"))
    assert main(["--max-tokens", "many"]) == 1
    assert "invalid argument: argument --max-tokens" in (tmp_path / "failure").read_text()
