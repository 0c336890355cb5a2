"""Server lifecycle: a server that cannot start is reported with its log tail and leaves nothing."""

import json

import pytest

from jobs.pilot.serving import ServerPool, VllmServer, cpu_serving_blocker, free_port, serve_python
from tests.jobs.pilot.conftest import ROOT, processes_mentioning


def test_w4a16_is_refused_on_a_cpu_without_avx512_and_w8a8_is_not():
    assert "AVX-512" in (cpu_serving_blocker("W4A16", flags={"avx2"}) or "")
    assert cpu_serving_blocker("W4A16", flags={"avx2", "avx512f"}) is None
    assert cpu_serving_blocker("W8A8", flags={"avx2"}) is None


def test_free_port_is_bindable():
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


@pytest.mark.slow
def test_server_that_fails_to_start_is_reported_with_its_log_and_stopped(tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    server = VllmServer("broken", broken, tmp_path / "broken.log", serve_python(ROOT / ".venv-serve"))
    with ServerPool([server], startup_timeout_s=300) as pool:
        failures = pool.start_all()
    assert set(failures) == {"broken"}
    message = str(failures["broken"])
    assert "exited with code" in message and "last lines:" in message
    assert "no-such-architecture" in message or "Error" in message
    assert processes_mentioning(str(broken)) == []
