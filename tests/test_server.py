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
def test_checkouts_started_at_once_get_a_server_each_and_use_only_their_own(
    tmp_path: Path, monkeypatch
) -> None:
    """Two checkouts' servers started at once: without taking turns both would pick the
    first free port, and the later server would fail to bind while its health checks
    reached the other one's. Then each checkout uses only its own server: a second start
    reuses it, and a third checkout sees none, though servers answer on this machine."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    checkouts = [tmp_path / "a", tmp_path / "b"]
    other = tmp_path / "other"
    for checkout in (*checkouts, other):
        checkout.mkdir()
    with ThreadPoolExecutor(2) as pool:
        started = list(pool.map(lambda checkout: server.start(checkout=checkout), checkouts))
    try:
        assert started[0].port != started[1].port
        for checkout, record in zip(checkouts, started, strict=True):
            assert server.is_healthy(record.port)
            assert server.running(checkout) == record == server.record(checkout)
            assert (server.state_dir(checkout) / "home").is_dir()  # its own database
        mine = checkouts[0]
        assert server.start(checkout=mine) == started[0]  # reused, not a third one
        assert server.running(other) is None
        assert server.use_checkout_server(other) is None
        assert server.use_checkout_server(mine) == started[0].url
    finally:
        monkeypatch.delenv("PREFECT_API_URL", raising=False)
        stopped = [server.stop(checkout) for checkout in checkouts]
    assert stopped == [True, True]
    for checkout, record in zip(checkouts, started, strict=True):
        assert not server.is_healthy(record.port) and server.running(checkout) is None
        assert not server.stop(checkout)


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
