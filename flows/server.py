"""Each checkout's own Prefect server on 127.0.0.1, so its stage runs show in the UI (and
only its runs: two checkouts never share a server or a database) and each process skips
the 10-18 s start of Prefect's temporary server.

The server's state (SQLite database, log, port and pid) lives in the checkout, under
`.exprbench/prefect/` (git-ignored). `start` takes the first free port from 4200 up unless
one is given; every `exprbench` command of the checkout then reads the port from
`server.json` and uses that server, never whatever else answers on 127.0.0.1:4200.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_PORT = 4200
PORT_RANGE = 100  # start looks for a free port in DEFAULT_PORT .. DEFAULT_PORT + 99
CHECKOUT = Path(__file__).resolve().parent.parent  # the checkout whose code is running


def api_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/api"


def is_healthy(port: int, timeout: float = 0.5) -> bool:
    import urllib.request  # here: ~60 ms (http, ssl, email) that `exprbench score` skips

    try:
        with urllib.request.urlopen(f"{api_url(port)}/health", timeout=timeout) as response:
            return response.status == 200 and json.loads(response.read() or b"false") is True
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class ServerRecord:
    """What `start` wrote: the checkout's server."""

    port: int
    pid: int
    checkout: str

    @property
    def url(self) -> str:
        return api_url(self.port)


def state_dir(checkout: Path = CHECKOUT) -> Path:
    return checkout / ".exprbench" / "prefect"


def record(checkout: Path = CHECKOUT) -> ServerRecord | None:
    """The checkout's server as last started (None: never started, or stopped)."""
    try:
        return ServerRecord(**json.loads((state_dir(checkout) / "server.json").read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def running(checkout: Path = CHECKOUT) -> ServerRecord | None:
    """The checkout's server if it is up and healthy."""
    found = record(checkout)
    # a loaded machine may take seconds to answer; a stopped server is refused at once
    return found if found is not None and is_healthy(found.port, timeout=5.0) else None


def use_checkout_server(checkout: Path = CHECKOUT) -> str | None:
    """Point this process at the checkout's running server, unless PREFECT_API_URL is set.

    Returns the API URL in use, or None (Prefect then starts a temporary server).
    """
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    found = running(checkout)
    if found is None:
        return None
    os.environ["PREFECT_API_URL"] = found.url
    return found.url


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def _free_port() -> int:
    for port in range(DEFAULT_PORT, DEFAULT_PORT + PORT_RANGE):
        if _port_free(port):
            return port
    raise RuntimeError(
        f"no free port in {DEFAULT_PORT}-{DEFAULT_PORT + PORT_RANGE - 1} on 127.0.0.1; "
        "stop a server (`exprbench server stop` in its checkout) or pass --port"
    )


@contextmanager
def _starting_lock() -> Iterator[None]:
    from exprbench.packaged import cache_home

    cache_home().mkdir(parents=True, exist_ok=True)
    with open(cache_home() / "server-start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def start(
    port: int | None = None, timeout: float = 120.0, checkout: Path = CHECKOUT
) -> ServerRecord:
    """Start the checkout's `prefect server` in the background (own session) and wait
    until it is healthy; a server already running for the checkout is reused."""
    # Starts on this machine take turns from looking for the checkout's server until the
    # new one answers: two at once would both find 4200 free (the loser's health checks
    # reaching the winner's server), or both start a server for one checkout.
    with _starting_lock():
        found = running(checkout)
        if found is not None and port in (None, found.port):
            return found
        if found is not None:
            stop(checkout)
        return _start_on_free_port(port, timeout, checkout)


def _start_on_free_port(port: int | None, timeout: float, checkout: Path) -> ServerRecord:
    """Start the server on `port` (or the first free one from DEFAULT_PORT) and wait."""
    if port is None:
        port = _free_port()
    elif not _port_free(port):
        raise RuntimeError(
            f"port {port} on 127.0.0.1 is taken by another process; pick another --port"
        )
    state = state_dir(checkout)
    state.mkdir(parents=True, exist_ok=True)
    log = open(state / "server.log", "ab")  # noqa: SIM115 - handed to the child process
    env = {
        **os.environ,
        "PREFECT_HOME": str(state / "home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    env.pop("PREFECT_API_URL", None)
    command = [sys.executable, "-m", "prefect", "server", "start"]
    process = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    started = ServerRecord(port, process.pid, str(checkout))
    (state / "server.json").write_text(json.dumps(asdict(started)))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"Prefect server exited with {process.returncode}; see {state / 'server.log'}"
            )
        if is_healthy(port):
            return started
        time.sleep(1)
    raise TimeoutError(
        f"Prefect server not healthy after {timeout:.0f} s; see {state / 'server.log'}"
    )


def stop(checkout: Path = CHECKOUT) -> bool:
    """Stop the checkout's server; False when none was running."""
    found = record(checkout)
    if found is None:
        return False
    (state_dir(checkout) / "server.json").unlink(missing_ok=True)
    try:
        os.killpg(found.pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    for _ in range(30):
        try:
            os.kill(found.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.5)
    os.killpg(found.pid, signal.SIGKILL)
    return True


def _die_with_parent() -> None:
    """In the child, before exec: the kernel sends SIGTERM when the parent dies, even by
    SIGKILL (Linux prctl PR_SET_PDEATHSIG), so no server outlives a killed run."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def start_temporary(timeout: float = 120.0) -> str:
    """A temporary Prefect API server for this process only (what Prefect's ephemeral mode
    starts, the same uvicorn app), bound to 127.0.0.1, ended when this process exits or is
    killed. Sets PREFECT_API_URL for this process and returns it."""
    import atexit
    import importlib.util

    # Prefect reads PREFECT_API_URL when it is imported: find it without importing it.
    spec = importlib.util.find_spec("prefect")
    assert spec is not None and spec.origin is not None, "prefect is not installed"
    # The socket is bound here, on a port the OS picks, and handed to uvicorn (--fd): no
    # other process can take the port between choosing and binding it, and the health
    # checks below reach this server, not one another command started at the same time.
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.bind(("127.0.0.1", 0))
    listening.listen(128)
    port = listening.getsockname()[1]
    env = {
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    env.pop("PREFECT_API_URL", None)
    app = ("--app-dir", str(Path(spec.origin).parent.parent), "--factory")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            *app,
            "prefect.server.api.server:create_app",
            "--fd",
            str(listening.fileno()),
            "--log-level",
            "error",
            "--lifespan",
            "on",
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        pass_fds=(listening.fileno(),),
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )
    listening.close()  # the server holds it now

    def stop_it() -> None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    atexit.register(stop_it)
    deadline = time.monotonic() + timeout
    while not is_healthy(port):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_it()
            raise RuntimeError(
                f"the temporary Prefect server on 127.0.0.1:{port} did not start "
                f"(exit {process.returncode}); start one with `exprbench server start`"
            )
        time.sleep(0.2)
    os.environ["PREFECT_API_URL"] = api_url(port)
    return os.environ["PREFECT_API_URL"]
