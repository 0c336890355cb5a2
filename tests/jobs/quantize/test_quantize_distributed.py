"""The distributed path (docs/quantize.md "Several GPUs") on CPU: two gloo ranks of the real
entrypoint, ``python -m jobs.quantize --num-processes 2``, against one rank on the same tiny model
and data; and what happens when one rank fails, dies or hangs.

"Within noise". Both runs solve GPTQ's least-squares problem with the same Hessian (the sum over
the same 16 samples), but the 2-rank Hessian is added up in another order (two partial sums, then
a reduce), and a weight that sits within float error of a grid midpoint can round one step the
other way. So, for the quantized weights: scales, norms and embeddings equal; at most 1 % of the
integer weights one step apart and none more (measured here: 0.35 % for this W8A8 run, 0 for
W4A16). For the outputs on held-out text: the 2-rank model must be closer to the 1-rank model
than half the distance that merely choosing other, equally valid calibration samples (``--seed
1``) puts between two 1-rank models (measured: 0.38 of it). Real divergence is far outside both:
with llm-compressor 0.14.0.1 partitioning the dataset itself, both ranks calibrated on the same
half of the samples and 17-30 % of the weights moved by up to 3 steps; without the CPU barriers a
race corrupted a whole module in one run of five (docs/quantize.md "Several GPUs").
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
import torch

from jobs.quantize import distributed, launch
from jobs.quantize.support import validate_hyperparameters
from jobs.quantize.tiny_model import build_tiny_llama
from tests.jobs.quantize.entrypoint import REPO, run_entrypoint, run_variants

ARGS = ("--algorithm", "gptq", "--scheme", "W8A8", "--num-calibration-samples", "16", "--max-seq-length", "128")
MAX_INT_WEIGHTS_OFF_BY_ONE = 0.01
MAX_OUTPUT_DIFFERENCE = 0.5  # of the difference another calibration seed makes

# Injected into every Python process of a run through PYTHONPATH: rank LLMQ_TEST_FAIL_RANK fails in
# the middle of the run, when the other rank is already waiting in oneshot's first collective.
SITECUSTOMIZE = """
import os
if os.environ.get("RANK") and os.environ.get("RANK") == os.environ.get("LLMQ_TEST_FAIL_RANK"):
    import signal, time
    import jobs.quantize.compress as compress

    def failing(*args, **kwargs):
        mode = os.environ["LLMQ_TEST_FAIL_MODE"]
        if mode == "raise":
            raise RuntimeError("injected failure")
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(3600)

    compress.build_recipe = failing
"""


@pytest.fixture(scope="session")
def tiny2_model_dir(tmp_path_factory: pytest.TempPathFactory, smollm2_dir: Path) -> Path:
    """Two decoder layers: the second one's input comes through the first, quantized, layer."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny2") / "model", num_layers=2, tokenizer_dir=smollm2_dir)


def reports_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob(f"{distributed.REPORTS_PREFIX}*")}


def logits(model_dir: Path, ids: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    with torch.no_grad():
        return model(ids).logits.float()


def compare_weights(one: Path, two: Path) -> float:
    """The fraction of integer weights that differ (by one step at most; floats must be equal)."""
    from safetensors.torch import load_file

    a, b = load_file(str(one / "model.safetensors")), load_file(str(two / "model.safetensors"))
    assert a.keys() == b.keys()
    differing = total = 0
    for key, tensor in a.items():
        assert (tensor.dtype, tensor.shape) == (b[key].dtype, b[key].shape), key
        if tensor.dtype.is_floating_point:
            assert torch.equal(tensor, b[key]), f"{key} differs"
            continue
        steps = (tensor.int() - b[key].int()).abs()
        assert int(steps.max()) <= 1, f"{key}: a weight moved by {int(steps.max())} steps"
        differing, total = differing + int((steps > 0).sum()), total + steps.numel()
    return differing / total


def test_two_cpu_ranks_give_the_one_rank_artifact(tmp_path, tiny2_model_dir, pydoc_calibration, held_out_text):
    before = reports_dirs()
    runs = {
        "one": (),
        "two": ("--num-processes", "2"),
        "one-seed-1": ("--seed", "1"),  # the noise reference: other, equally valid samples
    }
    out = run_variants(tmp_path, tiny2_model_dir, pydoc_calibration, ARGS, runs)
    one, two = out["one"], out["two"]
    # Same format: the same files, config (quantization_config included) and recipe.
    assert sorted(p.name for p in one.iterdir()) == sorted(p.name for p in two.iterdir())
    assert json.loads((one / "config.json").read_text()) == json.loads((two / "config.json").read_text())
    assert (one / "recipe.yaml").read_text() == (two / "recipe.yaml").read_text()
    m1, m2 = (json.loads((d / "manifest.json").read_text()) for d in (one, two))
    assert (m1["quantization"], m1["calibration"]) == (m2["quantization"], m2["calibration"])
    assert (m1["distributed"]["world_size"], m1["distributed"]["backend"]) == (1, None)
    assert (m2["distributed"]["world_size"], m2["distributed"]["backend"]) == (2, "gloo")
    ranks = m2["distributed"]["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert [r["calibration_samples"] for r in ranks] == [8, 8]  # disjoint halves of the 16
    assert all(r["peak_cpu_rss_bytes"] > 0 for r in ranks)
    # Quantized weights within noise (module docstring).
    off_by_one = compare_weights(one, two)
    # Outputs within noise: closer to the one-rank model than another seed's samples bring it.
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(str(tiny2_model_dir))(held_out_text, return_tensors="pt")["input_ids"][:, :512]
    q1, q2, reference = (logits(out[name], ids) for name in ("one", "two", "one-seed-1"))
    ratio = float((q2 - q1).norm()) / float((reference - q1).norm())
    print(f"integer weights one step apart: {off_by_one:.4%}; output difference / seed noise: {ratio:.3f}")
    assert off_by_one <= MAX_INT_WEIGHTS_OFF_BY_ONE
    assert ratio <= MAX_OUTPUT_DIFFERENCE
    # Nothing of the run left behind: no staging directory, no failure reports.
    assert not list(two.glob(".partial-*"))
    assert reports_dirs() <= before


@pytest.mark.parametrize(
    ("mode", "fragments"),
    [
        # Rank 1 raises: its own reason, written by rank 0 from rank 1's report.
        ("raise", ("rank 1 of 2: internal error: RuntimeError: injected failure",)),
        # Rank 1 dies without a word (as the OOM killer would): the launcher names it.
        ("kill", ("rank 1 of 2 was killed by SIGKILL", "without reporting a reason")),
        # Rank 1 hangs: rank 0 gives up after the collective timeout and says so.
        ("hang", ("rank 0 of 2: waited longer than the collective timeout", "LLMQ_DIST_TIMEOUT_S")),
    ],
)
def test_a_failing_rank_fails_the_job_once_with_a_reason(tmp_path, tiny2_model_dir, pydoc_calibration, mode, fragments):
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    before = reports_dirs()
    code, out, failure, seconds = run_entrypoint(
        tmp_path,
        mode,
        tiny2_model_dir,
        pydoc_calibration,
        *ARGS,
        "--num-processes",
        "2",
        PYTHONPATH=f"{tmp_path / 'inject'}{os.pathsep}{REPO}",
        LLMQ_TEST_FAIL_RANK="1",
        LLMQ_TEST_FAIL_MODE=mode,
        LLMQ_DIST_TIMEOUT_S="25",  # long enough for a loaded machine's healthy collectives
    )
    print(f"{mode}: exit {code} after {seconds:.1f} s: {failure}")
    assert code == 2
    assert failure is not None and failure.count("\n") == 1, failure
    for fragment in fragments:
        assert fragment in failure
    assert not out.exists(), "the launcher created the output directory; it must go"
    assert reports_dirs() <= before


def hp(algorithm: str = "gptq", scheme: str = "W8A8"):
    value, problems = validate_hyperparameters({"algorithm": algorithm, "scheme": scheme})
    assert value is not None, problems
    return value


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the rules of a host without CUDA")
def test_process_count_rules_without_cuda():
    assert launch.process_count("auto", hp()) == 1  # no GPU: one process, as before
    assert launch.process_count("3", hp()) == 3
    for value, fragment in [
        ("0", "between 1 and 64"),
        ("two", "auto or an integer"),
    ]:
        with pytest.raises(Exception, match=fragment):
            launch.process_count(value, hp())
    with pytest.raises(Exception, match="data-free"):
        launch.process_count("2", hp("rtn"))
    with pytest.raises(Exception, match="cannot run on several CPU ranks"):
        launch.process_count("2", hp("awq", "W4A16"))
    with pytest.raises(Exception, match="cannot run on several CPU ranks"):
        launch.process_count("2", hp("smoothquant-gptq"))


def test_num_processes_is_a_launch_setting_not_a_hyperparameter():
    raw = {"algorithm": "gptq", "num-processes": "2"}
    assert launch.pop_processes(raw) == "2"
    assert raw == {"algorithm": "gptq"}
    assert launch.pop_processes({}) == "auto"


@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
@pytest.mark.parametrize("samples", [8, 9, 128, 131])
def test_partition_gives_every_sample_to_exactly_one_rank(world_size, samples):
    slices = [distributed.partition(samples, distributed.Rank(r, world_size, r, "x")) for r in range(world_size)]
    assert [i for start, end in slices for i in range(start, end)] == list(range(samples))
    sizes = [end - start for start, end in slices]
    assert max(sizes) - min(sizes) <= 1


def test_the_first_root_cause_wins_and_the_launcher_names_a_silent_death(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    rank0, rank1 = (distributed.Rank(r, 2, r, "run1") for r in (0, 1))
    distributed.write_report(rank1, "rank 1 of 2: CUDA out of memory", root_cause=True)
    distributed.fail(rank0, "rank 0 of 2: lost the other ranks", root_cause=False, code=2, failure_dir=tmp_path / "out")
    assert (tmp_path / "out" / "failure").read_text() == "rank 1 of 2: CUDA out of memory\n"
    reports = distributed.read_reports(rank0.reports_dir)
    assert launch.launcher_reason({1: 2}, reports, 2) is None  # rank 0 knew the cause
    silent = [r for r in reports if r.rank == 0]
    assert launch.launcher_reason({0: 2, 1: -9}, silent, 2) == (
        "rank 1 of 2 was killed by SIGKILL" + launch.SIGNAL_HINTS["SIGKILL"] + " without reporting a reason"
    )


def test_shared_memory_too_small_for_the_model_is_refused(tmp_path, monkeypatch, tiny2_model_dir):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    tiny_shm = tmp_path / "shm"
    tiny_shm.mkdir()
    monkeypatch.setattr(launch, "SHM_MARGIN_BYTES", 1 << 60)  # no real /dev/shm holds this
    monkeypatch.setattr(launch, "SHM_DIR", tiny_shm)
    with pytest.raises(Exception, match="use num_processes 1 or a container with a larger /dev/shm"):
        launch.check_shared_memory(tiny2_model_dir, 2)
    launch.check_shared_memory(tiny2_model_dir, 1)  # one process shares nothing


def test_bad_input_fails_every_rank_at_once_with_the_one_process_message(tmp_path, tiny2_model_dir, pydoc_calibration):
    """Only rank 0 checks the output directory; agree() still stops rank 1 before any collective."""
    occupied = tmp_path / "occupied" / "model"
    occupied.mkdir(parents=True)
    (occupied / "earlier-artifact.json").write_text("{}")
    code, out, failure, _ = run_entrypoint(
        tmp_path, "occupied", tiny2_model_dir, pydoc_calibration, *ARGS, "--num-processes", "2"
    )
    assert code == 1
    assert failure == f"output directory {out} is not empty; refusing to overwrite an artifact\n"
    assert sorted(p.name for p in out.iterdir()) == ["earlier-artifact.json"]
