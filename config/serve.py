"""Serve Arbiter's ASGI application with uvicorn: `python -m config.serve --workers N`.

With several workers, each worker process gets its own listening socket on the same port
(SO_REUSEPORT), and the kernel spreads new connections across the sockets. `uvicorn --workers`
shares one socket among its workers instead, and whichever worker wakes first accepts every
connection waiting: a burst of keep-alive clients can land on one worker while the other idles
(bench/serve.py saw all 16 of its connections on one of two workers). One worker runs a plain
uvicorn server. Where SO_REUSEPORT does not exist, this falls back to uvicorn's own workers.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
from collections.abc import Sequence

import uvicorn
from uvicorn._subprocess import get_subprocess
from uvicorn.supervisors import Multiprocess

APP = "config.asgi:application"
logger = logging.getLogger("arbiter.serve")


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket that other sockets may bind beside it (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(config: uvicorn.Config, workers: int) -> None:
    """Run `workers` uvicorn processes, one socket each; restart one that dies; stop on SIGINT/SIGTERM."""
    if workers <= 1:
        uvicorn.Server(config).run()
        return
    if not hasattr(socket, "SO_REUSEPORT"):
        config.workers = workers
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return
    first = listening_socket(config.host, config.port)
    port = first.getsockname()[1]  # the port asked for, or the one the system chose for 0
    sockets = [first, *(listening_socket(config.host, port) for _ in range(workers - 1))]
    server = uvicorn.Server(config)
    processes = [get_subprocess(config, target=server.run, sockets=[sock]) for sock in sockets]
    for process in processes:
        process.start()
    logger.info("Arbiter serving on %s:%d with %d workers (pids %s)", config.host, port, workers,
                ", ".join(str(p.pid) for p in processes))

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        for i, process in enumerate(processes):
            # A dead worker's socket stays open here: connections waiting on it go to its successor.
            if not process.is_alive():
                logger.warning("worker %s exited with code %s; starting another", process.pid, process.exitcode)
                processes[i] = get_subprocess(config, target=server.run, sockets=[sockets[i]])
                processes[i].start()
    for process in processes:
        if process.is_alive():
            process.terminate()  # SIGTERM: uvicorn finishes the requests in flight
    for process in processes:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
    for sock in sockets:
        sock.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m config.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("ARBITER_WEB_WORKERS", "1")),
                        help="worker processes (default 1, or ARBITER_WEB_WORKERS)")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--no-access-log", action="store_true")
    parser.add_argument("--loop", default="auto", help="uvicorn's event loop: auto, asyncio or uvloop")
    parser.add_argument("--http", default="auto", help="uvicorn's HTTP parser: auto, h11 or httptools")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s:     %(message)s")
    config = uvicorn.Config(
        APP, host=args.host, port=args.port, log_level=args.log_level, access_log=not args.no_access_log,
        loop=args.loop, http=args.http,
    )
    serve(config, args.workers)


if __name__ == "__main__":
    main()
