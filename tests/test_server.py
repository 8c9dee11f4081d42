"""Prefect, kept apart per checkout: each checkout's own server, and tagged runs."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from exprbench.config import Layout
from exprbench.settings import load_settings
from flows import server
from tests.conftest import build_raw

ROOT = Path(__file__).resolve().parent.parent


def test_free_port_skips_a_busy_one(monkeypatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setattr(server, "DEFAULT_PORT", port)
        assert server._free_port() != port
    with pytest.raises(RuntimeError, match="taken by another process"), socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server.start(busy.getsockname()[1], checkout=ROOT / "nonexistent-checkout")


@pytest.mark.slow
def test_each_checkout_uses_only_its_own_server(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    mine, other = tmp_path / "mine", tmp_path / "other"
    mine.mkdir()
    other.mkdir()
    started = server.start(checkout=mine)
    try:
        assert server.is_healthy(started.port)
        assert server.running(mine) == started == server.record(mine)
        assert (server.state_dir(mine) / "home").is_dir()  # its own database
        assert server.start(checkout=mine) == started  # reused, not a second one
        # another checkout sees no server, even though one answers on this machine
        assert server.running(other) is None
        assert server.use_checkout_server(other) is None
        assert server.use_checkout_server(mine) == started.url
    finally:
        monkeypatch.delenv("PREFECT_API_URL", raising=False)
        assert server.stop(mine)
    assert not server.is_healthy(started.port) and server.running(mine) is None
    assert not server.stop(mine)


@pytest.mark.slow
def test_two_checkouts_starting_at_once_get_a_server_each(tmp_path: Path) -> None:
    """Without taking turns both would pick the first free port; the later server would
    fail to bind while its health checks reached the other one's."""
    from concurrent.futures import ThreadPoolExecutor

    checkouts = [tmp_path / "a", tmp_path / "b"]
    for checkout in checkouts:
        checkout.mkdir()
    with ThreadPoolExecutor(2) as pool:
        started = list(pool.map(lambda checkout: server.start(checkout=checkout), checkouts))
    try:
        assert started[0].port != started[1].port
        for checkout, record in zip(checkouts, started, strict=True):
            assert server.running(checkout) == record and server.is_healthy(record.port)
    finally:
        for checkout in checkouts:
            server.stop(checkout)


@pytest.mark.slow
def test_stage_runs_are_tagged_with_checkout_and_versions(
    tmp_path: Path, photos, prefect_server
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    from flows.stages import stage_flow, tagged

    raw = build_raw(
        tmp_path / "raw",
        photos,
        {"gen-x/v7/s/neutral.jpg": "grace_hopper", "gen-y/2/s/happy.jpg": "obama"},
    )
    layout = Layout.for_output(raw, tmp_path / "out")
    settings = load_settings(ROOT / "params.yaml")
    with tagged(layout, settings.ingest.extensions):
        stage_flow("ingest")(layout, settings)
    wanted = ["exprbench", f"checkout:{server.CHECKOUT.name}", "gen-x/v7", "gen-y/2"]
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=wanted))
        )
    assert [run.name for run in runs], "no flow run carries the checkout and version tags"


@pytest.mark.slow
def test_a_killed_command_leaves_no_temporary_server(tmp_path: Path) -> None:
    """Without a checkout server a command starts a temporary one; SIGKILL of the command
    (no cleanup runs) must not leave that server running."""
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    assert server.running() is None, "stop this checkout's server to run this test"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    (tmp_path / "in").mkdir()
    command = [sys.executable, "-m", "flows.cli", "run", "--input", str(tmp_path / "in")]
    process = subprocess.Popen(
        [*command, "--output", str(tmp_path / "out")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    port = None
    for line in process.stderr:
        found = re.search(r"temporary one on http://127\.0\.0\.1:(\d+)/api", line)
        if found:
            port = int(found.group(1))
            break
    assert port is not None and server.is_healthy(port)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    deadline = time.monotonic() + 20
    while server.is_healthy(port) or not server._port_free(port):
        assert time.monotonic() < deadline, f"the temporary server on {port} outlived its run"
        time.sleep(0.5)
