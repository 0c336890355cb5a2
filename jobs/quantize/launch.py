"""The quantize job's launcher: how many ranks, and starting them (docs/quantize.md "Several GPUs").

SageMaker starts the image's entrypoint, ``python3 -m jobs.quantize``, once. With more than one
GPU (or ``--num-processes N``), that process becomes the launcher: it runs torch's elastic agent
in-process (the machinery behind ``torchrun --standalone``, ``torch.distributed.launcher.api``),
which starts N ranks, each ``python -m jobs.quantize`` with the same arguments, and stops the
rest as soon as one fails. The launcher itself never loads a model.

After a failed run the launcher makes sure ``$SM_OUTPUT_DIR/failure`` names the cause: rank 0
writes it from the ranks' reports; the launcher writes it when rank 0 could not (it was killed)
or could not know (a rank died without a report, e.g. killed for lack of host memory), and
removes the staging directory a killed rank 0 leaves behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import uuid
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from jobs.quantize import distributed
from jobs.quantize.artifact import STAGING_PREFIX
from jobs.quantize.support import Hyperparameters
from jobs.sagemaker_job.failure import FAILURE_FILE, JobFailureError, write_failure

LOG = logging.getLogger("quantize")

PROCESSES_KEYS = ("num_processes", "num-processes", "--num-processes")
# Algorithms whose distributed path is correct on CPU ranks (docs/quantize.md "Several GPUs").
CPU_DISTRIBUTED_ALGORITHMS = ("gptq",)
MAX_PROCESSES = 64
# What /dev/shm must hold besides the shared model (CUDA ranks): NCCL's own buffers and slack.
SHM_MARGIN_BYTES = 2 * 1024**3
SHM_DIR = Path("/dev/shm")  # noqa: S108  (the shared-memory mount, not a temporary file)
SIGNAL_HINTS = {"SIGKILL": " (the kernel's out-of-memory killer ends processes this way when host RAM runs out)"}


def pop_processes(raw: MutableMapping[str, Any]) -> str:
    """Take the launch setting out of the hyperparameters (it does not change the result)."""
    value = "auto"
    for key in PROCESSES_KEYS:
        if key in raw:
            value = str(raw.pop(key)).strip().lower()
    return value


def process_count(value: str, hp: Hyperparameters) -> int:
    """``auto``: one rank per visible CUDA GPU, but no more than calibration samples asked for (1
    without CUDA, and for data-free rtn, which has no calibration to split); an integer asks for
    exactly that many. lambda/validate_input/quantize_sizing.py ``ranks_on`` is the same rule."""
    import torch  # noqa: PLC0415

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if hp.recipe == "auto":
        # The search runs its candidates one after the other in one process (docs/quantize.md
        # "Automatic recipe"); several ranks would each need the whole search.
        if value not in ("auto", "1"):
            raise JobFailureError("recipe auto runs in one process: use num_processes auto or 1")
        return 1
    if value == "auto":
        return max(1, min(gpus, hp.num_calibration_samples)) if hp.needs_calibration else 1
    try:
        count = int(value)
    except ValueError:
        raise JobFailureError(f"num_processes must be auto or an integer, got {value!r}") from None
    if not 1 <= count <= MAX_PROCESSES:
        raise JobFailureError(f"num_processes must be between 1 and {MAX_PROCESSES}, got {count}")
    if gpus and count > gpus:
        raise JobFailureError(f"num_processes {count} is more than the {gpus} GPU(s) this instance has")
    if count > 1 and not hp.needs_calibration:
        raise JobFailureError(
            f"{hp.algorithm} is data-free: there is no calibration to split across ranks; use num_processes 1"
        )
    if count > 1 and not gpus and hp.algorithm not in CPU_DISTRIBUTED_ALGORITHMS:
        raise JobFailureError(
            f"{hp.algorithm} cannot run on several CPU ranks: llm-compressor 0.14's AWQ needs an accelerator for "
            "its all-reduce, and SmoothQuant rescales the weights that CPU ranks share once per rank; "
            "on CPU use num_processes 1 (several ranks on CPU exist for testing the gptq path)"
        )
    return count


def weight_bytes(model_dir: Path) -> int:
    return sum(p.stat().st_size for p in model_dir.iterdir() if p.name.endswith((".safetensors", ".bin")))


def check_shared_memory(model_dir: Path, processes: int) -> None:
    """CUDA ranks share the model's CPU copy through /dev/shm: refuse at once if it cannot hold
    it (a container's default is 64 MiB), rather than fail after rank 0 has read the model."""
    import torch  # noqa: PLC0415

    if processes < 2 or not torch.cuda.is_available() or not model_dir.is_dir():
        return
    needed = weight_bytes(model_dir) + SHM_MARGIN_BYTES
    try:
        available = shutil.disk_usage(SHM_DIR).total
    except OSError:
        available = 0
    if available < needed:
        gib = 1024**3
        raise JobFailureError(
            f"{processes} ranks share the model through {SHM_DIR}, which holds {available / gib:.1f} GiB; "
            f"it needs {needed / gib:.1f} GiB (the weights plus {SHM_MARGIN_BYTES // gib} GiB): "
            "use num_processes 1 or a container with a larger /dev/shm"
        )


@contextlib.contextmanager
def exported(env: Mapping[str, str] | None) -> Iterator[None]:
    """The ranks inherit this process's environment: export an explicit ``env`` (tests) to them."""
    if env is None or env is os.environ:
        yield
        return
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _rank_environment(processes: int) -> None:
    package_root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH", "")
    if package_root not in path.split(os.pathsep):
        os.environ["PYTHONPATH"] = package_root + (os.pathsep + path if path else "")
    # torchrun's rule, with the host's cores shared out instead of one thread per rank.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))


def _start_ranks(argv: list[str], processes: int, run_id: str) -> dict[int, int]:
    """Run the ranks to the end; returns the exit code of each rank that failed (empty: none)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError  # noqa: PLC0415
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch  # noqa: PLC0415

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=processes,
        run_id=run_id,
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # torchrun --standalone: a free port on this host
        max_restarts=0,
        monitor_interval=1.0,
        start_method="spawn",
    )
    try:
        elastic_launch(config, sys.executable)("-u", "-m", "jobs.quantize", *argv)
    except ChildFailedError as exc:
        return {int(rank): int(failure.exitcode) for rank, failure in exc.failures.items()}
    return {}


def _exit_text(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            name = signal.Signals(-code).name
            return f"was killed by {name}{SIGNAL_HINTS.get(name, '')}"
    return f"exited with code {code}"


def launcher_reason(exits: dict[int, int], reports: list[distributed.Report], processes: int) -> str | None:
    """The failure file's line when the launcher knows better than rank 0, else None: a rank
    that failed without a report explains the others' lost-peer errors."""
    if any(report.root_cause for report in reports):
        return None
    reported = {report.rank for report in reports}
    for rank, code in sorted(exits.items()):
        if rank not in reported:
            return f"rank {rank} of {processes} {_exit_text(code)} without reporting a reason"
    return None


def run_ranks(argv: list[str], processes: int, output: Path, failure_dir: Path, env: Mapping[str, str] | None) -> int:
    """Start ``processes`` ranks of this job; the job's exit code (0, 1 bad input, 2 internal)."""
    run_id = uuid.uuid4().hex[:12]
    created_output = not output.exists()
    reports = distributed.reports_dir(run_id)
    LOG.info("starting %d ranks (run %s)", processes, run_id)
    try:
        with exported(env):
            _rank_environment(processes)
            exits = _start_ranks(argv, processes, run_id)
        if not exits:
            return 0
        found = distributed.read_reports(reports)
        known = launcher_reason(exits, found, processes)
        # The cause's exit code (1 bad input, 2 internal error), as one process would exit.
        code = found[0].code if found and known is None else 2
        if known is None and not (failure_dir / FAILURE_FILE).is_file():
            # Rank 0 was stopped before it wrote the file: the first report says what it would have.
            known = found[0].line if found else f"ranks failed with exit codes {exits}"
        if known is not None:
            write_failure(known, failure_dir)
        LOG.error("failed: %s", (failure_dir / FAILURE_FILE).read_text().strip())
        return code
    finally:
        shutil.rmtree(reports, ignore_errors=True)
        shutil.rmtree(output / f"{STAGING_PREFIX}{run_id}", ignore_errors=True)
        if created_output:
            with contextlib.suppress(OSError):
                output.rmdir()  # only if empty: a published artifact stays
