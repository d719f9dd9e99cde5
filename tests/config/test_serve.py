"""`python -m config.serve`: worker processes with a listening socket each, spread connections, clean stop."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.serve import children, connections_of, free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="needs SO_REUSEPORT")


def get(port: int, sock: socket.socket | None = None) -> tuple[int, socket.socket]:
    """GET /login/ on a keep-alive connection (a new one unless given); (status, connection)."""
    if sock is None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(f"GET /login/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split(b" ")[1]), sock


@pytest.fixture
def server(tmp_path):
    port = free_port()
    env = dict(os.environ, ARBITER_DATA_DIR=str(tmp_path), DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "config.serve", "--port", str(port), "--workers", "2", "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode()
        try:
            status, sock = get(port)
            sock.close()
            if status == 200:
                break
        except OSError:
            time.sleep(0.2)
    yield proc, port
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def workers(pid: int) -> list[int]:
    """The uvicorn worker processes `config.serve` spawned (not multiprocessing's helper)."""
    found = []
    for child in children(pid):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except OSError:  # it exited meanwhile (the worker this test kills, say)
            pass
    return found


def wait_for(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_workers_each_listen_and_share_the_connections(server):
    proc, port = server
    wait_for(lambda: len(workers(proc.pid)) == 2)
    # A burst: 16 clients connect at once, as a load test does.
    clients = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(16)]
    for sock in clients:
        assert get(port, sock)[0] == 200
    for sock in clients:  # keep-alive: a second request on each connection
        assert get(port, sock)[0] == 200
    held = {pid: connections_of(pid, port) for pid in workers(proc.pid)}
    assert sum(held.values()) == 16
    # Connections are spread by a hash of the client's address and port: all 16 on one of the
    # two sockets has probability 2 / 2**16.
    assert all(held.values()), held
    for sock in clients:
        sock.close()


def test_a_worker_that_dies_is_replaced_and_sigterm_stops_everything(server):
    proc, port = server
    wait_for(lambda: len(workers(proc.pid)) == 2)
    victim = workers(proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in workers(proc.pid) and len(workers(proc.pid)) == 2)
    for _ in range(16):  # both sockets still answer (the dead worker's was kept open by the parent)
        status, sock = get(port)
        sock.close()
        assert status == 200
    everyone = children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    wait_for(lambda: not [pid for pid in everyone if running(pid)], timeout=10)


def running(pid: int) -> bool:
    """Alive and not a zombie (an exited process nobody has reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"
