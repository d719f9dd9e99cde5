import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Run the web server (ASGI) and a Celery worker together; Ctrl-C stops both."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-worker", action="store_true")
        parser.add_argument("--web-workers", type=int, default=None,
                            help="web processes (default 1, or ARBITER_WEB_WORKERS); see config/serve.py")

    def handle(self, *args, host: str, port: int, no_worker: bool, web_workers: int | None, **options) -> None:
        python = sys.executable
        web = [python, "-m", "config.serve", "--host", host, "--port", str(port), "--log-level", "info", "--no-access-log"]
        if web_workers is not None:
            web += ["--workers", str(web_workers)]
            if web_workers > 1 and not settings.REDIS_URL:
                self.stderr.write("Several web processes without REDIS_URL: a live page updates only for "
                                  "changes made through the process that serves it.")
        commands = {"web": web}
        if not no_worker:
            commands["worker"] = [
                python, "-m", "celery", "-A", "config", "worker", "--beat", "--loglevel", "INFO",
                "--queues", "default,training", "--concurrency", "2", "--without-gossip", "--without-mingle",
                "--schedule", str(settings.DATA_DIR / "celerybeat-schedule"),
            ]
        procs = {name: subprocess.Popen(cmd, cwd=settings.BASE_DIR, env=os.environ.copy())
                 for name, cmd in commands.items()}
        self.stdout.write(self.style.SUCCESS(f"Arbiter is running at http://{host}:{port}/ (Ctrl-C stops it)"))
        code = 0
        try:
            while True:
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        self.stderr.write(f"{name} exited with code {proc.returncode}; stopping.")
                        code = proc.returncode or 1
                        raise KeyboardInterrupt
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            for proc in procs.values():
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
            self.stdout.write("Stopped web and worker.")
        if code:
            sys.exit(code)
