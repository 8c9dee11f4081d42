"""A persistent local Prefect server on 127.0.0.1, so stage runs show in the UI and each
process skips the 10-18 s start of Prefect's temporary server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from exprbench.packaged import cache_home

DEFAULT_PORT = 4200


def api_url(port: int = DEFAULT_PORT) -> str:
    return f"http://127.0.0.1:{port}/api"


def is_healthy(port: int = DEFAULT_PORT, timeout: float = 0.5) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url(port)}/health", timeout=timeout) as response:
            return response.status == 200 and json.loads(response.read() or b"false") is True
    except (OSError, ValueError):
        return False


def use_local_server_if_running(port: int = DEFAULT_PORT) -> bool:
    """Point this process at a running local server unless PREFECT_API_URL is already set."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    if is_healthy(port):
        os.environ["PREFECT_API_URL"] = api_url(port)
        return True
    return False


def _state_dir() -> Path:
    path = cache_home() / "prefect-server"
    path.mkdir(parents=True, exist_ok=True)
    return path


def start(port: int = DEFAULT_PORT, timeout: float = 120.0) -> str:
    """Start `prefect server start` in the background (own session) and wait until healthy."""
    if is_healthy(port):
        return api_url(port)
    state = _state_dir()
    log = open(state / "server.log", "ab")  # noqa: SIM115 - handed to the child process
    env = {
        **os.environ,
        "PREFECT_HOME": str(state / "home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    env.pop("PREFECT_API_URL", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    (state / "server.pid").write_text(str(process.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"Prefect server exited with {process.returncode}; see {state / 'server.log'}"
            )
        if is_healthy(port):
            return api_url(port)
        time.sleep(1)
    raise TimeoutError(
        f"Prefect server not healthy after {timeout:.0f} s; see {state / 'server.log'}"
    )


def stop() -> bool:
    pid_file = _state_dir() / "server.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        return False
    for _ in range(30):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    else:
        os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return True
