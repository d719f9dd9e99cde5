import time

from django.core.management.base import BaseCommand, CommandError, CommandParser

from training.management.commands.train_reward import report
from training.models import TrainingLogLine, TrainingRun


class Command(BaseCommand):
    help = "Follow a training run with a progress bar and its log until it ends (exit status 1 unless it succeeds)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("run_id", type=int)
        parser.add_argument(
            "--interval", type=float, default=1.0, help="Seconds between looks (default 1)."
        )
        parser.add_argument(
            "--timeout", type=float, default=None, help="Give up after this many seconds."
        )

    def handle(self, *args, run_id: int, interval: float, timeout: float | None, **options) -> None:
        from tqdm import tqdm

        run = TrainingRun.objects.filter(pk=run_id).first()
        if run is None:
            raise CommandError(f"No training run with id {run_id}.")
        deadline = None if timeout is None else time.monotonic() + timeout
        last_line = 0
        bar = tqdm(desc=f"run {run_id}", unit="step", file=self.stdout, dynamic_ncols=True)
        try:
            while True:
                run = TrainingRun.objects.get(pk=run_id)
                for line in TrainingLogLine.objects.filter(
                    run_id=run_id, pk__gt=last_line
                ).order_by("pk"):
                    bar.write(f"[{line.created_at:%H:%M:%S}] {line.message}", file=self.stdout)
                    last_line = line.pk
                bar.total = run.total_steps or None
                bar.n = run.step
                bar.set_postfix_str(run.status, refresh=False)
                bar.refresh()
                if run.status in TrainingRun.ENDED:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise CommandError(f"Run {run_id} is still {run.status} after {timeout:g} s.")
                time.sleep(interval)
        finally:
            bar.close()
        report(self, run)
