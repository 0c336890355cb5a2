"""One rank of a data-parallel quantize job (docs/quantize.md "Several GPUs").

The job's launcher (``jobs/quantize/launch.py``) starts one rank per GPU under torch's elastic
agent (what ``torchrun`` runs); each rank is ``python -m jobs.quantize`` again, recognised here by
the variables the agent sets. llm-compressor's oneshot then splits the calibration samples
across the ranks, and GPTQ spreads its per-module compression over them.

The CUDA/CPU difference lives in this module only:

- CUDA: the process group is initialised the way ``compressed_tensors.offload.init_dist()``
  does it (NCCL, one GPU per local rank, ``env://``), with one addition, a timeout (below); the
  model is loaded inside ``load_offloaded_model()`` with ``device_map="cpu"``: rank 0 reads the
  weights, the other ranks build a weightless model, and the CPU copy is shared between the
  ranks through shared memory (``/dev/shm``), so host RAM holds the model once, not once per rank.
- CPU (tests): ``init_dist()`` and ``load_offloaded_model()`` need an accelerator (the first asks
  ``torch.accelerator`` for its device type, the second for its memory: "Cannot access
  accelerator device when none is available"), so the process group is gloo, initialised here,
  and each rank loads the model itself. llm-compressor's sequential pipeline then moves every
  rank's weights into the same shared CPU offload, as on CUDA; ``cpu_rank_barriers`` orders
  GPTQ's writes to it, and AWQ and SmoothQuant are refused on several CPU ranks (launch.py).

Timeouts: every collective waits at most ``collective_timeout`` (``LLMQ_DIST_TIMEOUT_S`` overrides
it). ``init_dist()`` takes no timeout and NCCL's default is 10 minutes, shorter than ranks 1..N-1
wait while rank 0 alone reads a 70B+ model; the default here is 30 minutes or the time to read
the source at 100 MB/s, whichever is longer.

Failures: a rank that fails writes one report (its reason, and whether it is the root cause or
a consequence of another rank's failure) into a directory all ranks share; rank 0 writes
SageMaker's failure file from the reports (the first root cause wins). A rank stopped by the
agent (SIGTERM, after another rank failed) fails with ``RankStoppedError``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import signal
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.quantize.artifact import STAGING_PREFIX
from jobs.sagemaker_job.failure import JobFailureError, write_failure

LOG = logging.getLogger("quantize")

# Set by torch's elastic agent (torchrun) in every worker it starts.
WORKER_VARIABLES = ("TORCHELASTIC_RUN_ID", "RANK", "WORLD_SIZE", "LOCAL_RANK")
TIMEOUT_ENV = "LLMQ_DIST_TIMEOUT_S"
MIN_TIMEOUT_S = 1800.0
# A pessimistic read rate for the source model (an EBS gp3 volume's baseline is 125 MB/s).
SOURCE_READ_BYTES_PER_S = 100e6
REPORTS_PREFIX = "llmq-quantize-"


class AgreedFailureError(JobFailureError):
    """A failure every rank raises together (``agree``): the failure file's line as it is."""


class RankStoppedError(Exception):
    """The elastic agent stopped this rank (SIGTERM), normally because another rank failed."""


@dataclass(frozen=True)
class Rank:
    """This process's place in a distributed run, from the elastic agent's variables."""

    rank: int
    world_size: int
    local_rank: int
    run_id: str

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Rank | None:
        env = os.environ if env is None else env
        if not all(env.get(name) for name in WORKER_VARIABLES):
            return None
        return cls(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"]), env["TORCHELASTIC_RUN_ID"])

    @property
    def is_source(self) -> bool:
        """Rank 0: the one that writes the artifact, the manifest and the failure file."""
        return self.rank == 0

    @property
    def staging_name(self) -> str:
        """The staging directory's name, known to every rank and to the launcher."""
        return f"{STAGING_PREFIX}{self.run_id}"

    @property
    def reports_dir(self) -> Path:
        return reports_dir(self.run_id)


def reports_dir(run_id: str) -> Path:
    """Where the ranks of run ``run_id`` leave their failure reports (one host: /tmp is shared)."""
    return Path(tempfile.gettempdir()) / f"{REPORTS_PREFIX}{run_id}"


def collective_timeout(source_bytes: int, env: Mapping[str, str] | None = None) -> datetime.timedelta:
    env = os.environ if env is None else env
    if env.get(TIMEOUT_ENV):
        return datetime.timedelta(seconds=float(env[TIMEOUT_ENV]))
    return datetime.timedelta(seconds=max(MIN_TIMEOUT_S, source_bytes / SOURCE_READ_BYTES_PER_S))


def _stop(signum: int, _frame: Any) -> None:
    raise RankStoppedError(f"stopped by signal {signal.Signals(signum).name}")


def start(rank: Rank, timeout: datetime.timedelta) -> str:
    """Join the process group; returns the backend. SIGTERM (the agent stopping the ranks after
    one failed) becomes an exception, so rank 0 still writes the failure file and cleans up."""
    import torch  # noqa: PLC0415
    import torch.distributed as dist  # noqa: PLC0415

    signal.signal(signal.SIGTERM, _stop)
    if torch.cuda.is_available():
        # compressed_tensors.offload.init_dist(), plus the timeout it does not take.
        device = torch.device("cuda", rank.local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group(
            backend="nccl",
            init_method="env://",
            rank=rank.rank,
            world_size=rank.world_size,
            device_id=device,
            timeout=timeout,
        )
    else:
        dist.init_process_group(
            backend="gloo", init_method="env://", rank=rank.rank, world_size=rank.world_size, timeout=timeout
        )
    dist.barrier()
    backend = str(dist.get_backend())
    LOG.info("rank %d of %d joined (%s, timeout %s)", rank.rank, rank.world_size, backend, timeout)
    return backend


def finish() -> None:
    import torch.distributed as dist  # noqa: PLC0415

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def load_model(model_dir: Path, dtype: Any, auto_class: Any = None) -> Any:
    """The source model on this rank (CPU memory; the pipeline onloads layers to the GPU).

    ``auto_class``: the transformers class to load with (default ``AutoModelForCausalLM``;
    jobs/quantize/families.py picks another for vision-language models)."""
    import torch  # noqa: PLC0415
    import torch.distributed as dist  # noqa: PLC0415
    from transformers import AutoModelForCausalLM  # noqa: PLC0415

    cls = AutoModelForCausalLM if auto_class is None else auto_class
    if not (dist.is_available() and dist.is_initialized()) or not torch.cuda.is_available():
        return cls.from_pretrained(str(model_dir), dtype=dtype)
    from compressed_tensors.offload import load_offloaded_model  # noqa: PLC0415

    with load_offloaded_model():
        return cls.from_pretrained(str(model_dir), dtype=dtype, device_map="cpu")


def partition(samples: int, rank: Rank) -> tuple[int, int]:
    """This rank's slice ``[start, end)`` of the calibration samples: contiguous, disjoint, sizes
    differing by at most one (llm-compressor's own rule, ``get_rank_partition``).

    The job slices the dataset itself, as llm-compressor's guide does with ``get_rank_partition``.
    Handing every rank the whole dataset and letting oneshot partition it is broken in 0.14.0.1:
    its sampler numbers the rank's slice from 0 but the DataLoader reads the whole dataset with
    those numbers, so every rank calibrated on the first slice (seen: both ranks' GPTQ Hessians
    equal, the second half of the samples never read).
    """
    start = samples * rank.rank // rank.world_size
    return start, samples * (rank.rank + 1) // rank.world_size


@contextlib.contextmanager
def cpu_rank_barriers() -> Iterator[None]:
    """Order GPTQ's weight writes between CPU ranks (a no-op with an accelerator or one process).

    llm-compressor 0.14 assumes each rank onloads the weights to its own accelerator. On CPU the
    "onloaded" weight *is* the CPU offload, which all ranks share, and GPTQ skips its broadcast
    for CPU modules (``broadcast_qparams_and_cleanup(skip_cpu=True)``) without a barrier: a fast
    rank wrote its modules' quantized weights while a slow one still read them to compute the
    scales, or propagated activations through them (seen: a module's saved weights off by 130 %
    in one run of five, and runs that differed from each other). A barrier before and after
    GPTQ's compression step restores the order the GPU path gets from its broadcasts.
    """
    import torch  # noqa: PLC0415
    import torch.distributed as dist  # noqa: PLC0415
    from llmcompressor.modifiers.gptq import GPTQModifier  # noqa: PLC0415

    if torch.accelerator.is_available() or not (dist.is_available() and dist.is_initialized()):
        yield
        return
    original = GPTQModifier.compress_modules

    def ordered(self: Any) -> None:
        dist.barrier()
        original(self)
        dist.barrier()

    GPTQModifier.compress_modules = ordered  # type: ignore[method-assign]
    try:
        yield
    finally:
        GPTQModifier.compress_modules = original  # type: ignore[method-assign]


def agree(problem: str | None, rank: Rank) -> None:
    """Every rank says whether its preflight passed; if any failed, every rank raises the lowest
    failing rank's reason, so no rank walks into a collective the others never reach. The
    reasons are input problems (the same on every rank, or rank 0's output directory): they are
    reported as written, as with one process."""
    import torch.distributed as dist  # noqa: PLC0415

    problems: list[Any] = [None] * rank.world_size
    dist.all_gather_object(problems, problem)
    failed = [text for text in problems if text]
    if failed:
        raise AgreedFailureError(failed[0])


def gather(value: Any, rank: Rank) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank (small objects only)."""
    import torch.distributed as dist  # noqa: PLC0415

    values: list[Any] = [None] * rank.world_size
    dist.all_gather_object(values, value)
    return values


# --- failure reports -------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    rank: int
    line: str  # the failure file's line this rank proposes
    root_cause: bool  # False: a consequence of another rank's failure (lost peer, stopped)
    time: float
    code: int  # the rank's exit code: 1 bad input, 2 internal error


def is_consequence(exc: BaseException) -> bool:
    """An error that another rank's failure explains: the agent stopped us, a peer vanished, or
    a collective timed out waiting for ranks that never came."""
    if isinstance(exc, RankStoppedError):
        return True
    with contextlib.suppress(ImportError, AttributeError):
        import torch.distributed as dist  # noqa: PLC0415

        if isinstance(exc, dist.DistError):
            return True
    text = str(exc).lower()
    return any(phrase in text for phrase in ("connection closed by peer", "connection reset by peer", "timed out"))


def failure_line(rank: Rank, reason: str, *, agreed: bool = False) -> str:
    """``reason`` naming its rank when there are several (``agree`` already names one)."""
    return reason if agreed or rank.world_size == 1 else f"rank {rank.rank} of {rank.world_size}: {reason}"


def write_report(rank: Rank, line: str, *, root_cause: bool, code: int = 2) -> None:
    directory = rank.reports_dir
    directory.mkdir(parents=True, exist_ok=True)
    report = {"rank": rank.rank, "line": line, "root_cause": root_cause, "time": time.time(), "code": code}
    path = directory / f"rank-{rank.rank}.json"
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(report))
    partial.replace(path)  # whole or absent: rank 0 may read it while this rank exits


def read_reports(directory: Path) -> list[Report]:
    """Every rank's report, root causes first, each group earliest first."""
    reports = []
    for path in sorted(directory.glob("rank-*.json")) if directory.is_dir() else []:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            data = json.loads(path.read_text())
            fields = (int(data["rank"]), str(data["line"]), bool(data["root_cause"]), float(data["time"]))
            reports.append(Report(*fields, code=int(data["code"])))
    return sorted(reports, key=lambda r: (not r.root_cause, r.time))


def fail(rank: Rank, line: str, *, root_cause: bool, code: int, failure_dir: Path) -> None:
    """Record this rank's failure; rank 0 writes SageMaker's failure file from every report so
    far: the earliest root cause, else its own line."""
    with contextlib.suppress(OSError):
        write_report(rank, line, root_cause=root_cause, code=code)
    if not rank.is_source:
        return
    reports = read_reports(rank.reports_dir)
    write_failure(reports[0].line if reports else line, failure_dir)


@contextlib.contextmanager
def ignoring_sigterm() -> Iterator[None]:
    """Cleanup that must finish even though the agent's SIGTERM may arrive meanwhile."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
