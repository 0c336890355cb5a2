"""Bad pilot input: one clear message, a non-zero exit, nothing left running."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.jobs.pilot.conftest import ROOT, pilot_cmd, processes_mentioning


def children_of(pid):
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
            except (OSError, ValueError, IndexError):
                continue
    return out


def members_of_groups(pgids):
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) in pgids and "zombie" not in (entry / "status").read_text():
                    alive.append(int(entry.name))
            except (OSError, ProcessLookupError):
                continue
    return alive


def run_pilot(tmp_path, *args):
    proc = subprocess.run(
        pilot_cmd("--artifacts", str(tmp_path / "artifacts"), *args),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc


def start_pilot_until(tmp_path, marker, within_s, *args):
    """Start the pilot and read its output until a line holds ``marker``, which must come within ``within_s``.

    Returns the running process and the deadline.
    """
    proc = subprocess.Popen(
        pilot_cmd("--artifacts", str(tmp_path / "artifacts"), *args),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = []
    deadline = time.monotonic() + within_s
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if marker in line or time.monotonic() > deadline:
            break
    assert any(marker in ln for ln in seen), "".join(seen)
    return proc, deadline


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "/nonexistent/model"], "model path /nonexistent/model does not exist"),
        (["--schemes", "W8A8 W5A5"], "unknown scheme(s) W5A5"),
        (["--max-ppl-increase-pct", "-3"], "max_ppl_increase_pct must be within [0, 1000]"),
        (["--max-error-rate", "2"], "max_error_rate must be within [0, 1]"),
        (["--workload-concurrency", "8"], "workload concurrency 8 is not among the measured levels [1, 4, 16]"),
        (["--algorithm", "awq", "--schemes", "W8A8"], "algorithm awq does not support scheme W8A8"),
    ],
)
def test_bad_input_exits_2_with_one_message_and_starts_nothing(tmp_path, args, message):
    proc = run_pilot(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("pilot: error:"), proc.stderr
    assert message in lines[0]
    assert not (tmp_path / "artifacts").exists()
    assert processes_mentioning(str(tmp_path)) == []


def test_unreadable_calibration_file_is_refused(tmp_path):
    bad = tmp_path / "cal.jsonl"
    bad.write_text('{"text": "fine"}\nnot json\n')
    proc = run_pilot(tmp_path, "--calibration", str(bad))
    assert proc.returncode == 2
    assert "calibration data" in proc.stderr and "cal.jsonl:2" in proc.stderr
    missing = run_pilot(tmp_path, "--calibration", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "nope.jsonl does not exist" in missing.stderr


def test_every_problem_is_reported_in_the_one_message(tmp_path):
    proc = run_pilot(tmp_path, "--schemes", "W9", "--max-p95-latency-ratio", "0", "--model", str(tmp_path / "m"))
    assert proc.returncode == 2
    assert "W9" in proc.stderr and "max_p95_latency_ratio" in proc.stderr and "model path" in proc.stderr


@pytest.mark.slow
def test_ctrl_c_during_quantization_stops_the_job_and_exits_130(tmp_path, smollm2_dir):
    cal = tmp_path / "cal.jsonl"
    cal.write_text("".join(json.dumps({"text": f"calibration text number {i}."}) + "\n" for i in range(8)))
    args = [
        "--calibration", str(cal), "--algorithm", "gptq",
        "--num-calibration-samples", "8", "--max-seq-length", "64",
    ]  # fmt: skip
    proc, _ = start_pilot_until(tmp_path, "quantize W8A8 |", 300, *args)
    assert processes_mentioning(str(tmp_path)), "the quantize job should be running"
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, rest
    assert "interrupted" in rest
    time.sleep(1)
    assert processes_mentioning(str(tmp_path)) == []


@pytest.mark.slow
def test_ctrl_c_while_vllm_servers_load_stops_every_server(tmp_path, smollm2_dir):
    args = ["--max-validation-tokens", "64", "--max-model-len", "256"]
    proc, deadline = start_pilot_until(tmp_path, "starting 2 vLLM servers", 600, *args)
    # The pilot's own servers: its children running vLLM, each leading its own process group.
    servers: list[int] = []
    while time.monotonic() < deadline and len(servers) < 2:
        servers = [pid for pid, cmd in children_of(proc.pid) if "vllm.entrypoints" in cmd]
        time.sleep(0.5)
    assert len(servers) == 2
    time.sleep(3)  # let the engine processes spawn, so the whole groups have to be stopped
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, rest
    time.sleep(1)
    assert processes_mentioning(str(tmp_path)) == []
    assert members_of_groups(servers) == []


def test_auto_is_the_default_recipe_and_rtn_the_fast_path():
    from jobs.pilot.plan import CALIBRATION_DEFAULTS, parse_args
    from jobs.pilot.steps import recipe_arguments

    args = parse_args([])
    assert (args.algorithm, args.search_budget_seconds) == ("auto", 240)
    assert recipe_arguments(args.algorithm, 240) == ["--recipe", "auto", "--search-budget-seconds", "240"]
    assert recipe_arguments("rtn", 240) == ["--algorithm", "rtn"]
    assert CALIBRATION_DEFAULTS == {"auto": (16, 256), "fixed": (64, 512)}
    assert "ALGORITHM ?= auto" in (ROOT / "Makefile").read_text()
