"""The pilot's child processes (quantize jobs, model conversion): tracked so Ctrl-C stops them too."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType

from jobs.pilot.plan import ROOT, Progress


@dataclass
class Children:
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def run(
        self, cmd: list[str], *, env: dict[str, str], log: Progress, prefix: str, timeout: float
    ) -> tuple[int, str]:
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self.procs.append(proc)
        last = ""
        deadline = time.monotonic() + timeout
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                text = line.rstrip()
                if text:
                    last = text
                    # Progress bars redraw with \r: show the latest state of each line.
                    print(f"    {prefix} | {text.split(chr(13))[-1][:160]}", flush=True)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{prefix} ran past {timeout:.0f} s")
            proc.wait()
        finally:
            self.stop(proc)
        return int(proc.returncode if proc.returncode is not None else -1), last

    def stop(self, proc: subprocess.Popen[str]) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            self.stop(proc)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TQDM_DISABLE", None)  # the jobs' own progress bars are wanted
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return env


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """SIGTERM (and SIGHUP) end the pilot like Ctrl-C does: through the cleanup below."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, prev in old.items():
            signal.signal(sig, prev)
