import json
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.errors import ApplicationError
from annotation.models import Dataset


def parse_config(text: str | None, assignments: list[str]) -> dict[str, Any]:
    """Return the config from `--config` (JSON, or @file.json) with each `--set key=value` applied."""
    config: dict[str, Any] = {}
    if text:
        raw = Path(text[1:]).read_text() if text.startswith("@") else text
        try:
            config = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--config: not valid JSON ({exc}).") from exc
        if not isinstance(config, dict):
            raise CommandError("--config: must be a JSON object of settings.")
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CommandError(
                f"--set {item!r}: write it as key=value, e.g. --set learning_rate=1e-4."
            )
        try:
            config[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            config[key.strip()] = value  # a bare string, e.g. truncation=drop
    return config


class Command(BaseCommand):
    help = (
        "Train a reward model on a dataset snapshot: queue the run for a worker (then follow it with "
        "training_progress), or with --now train it in this process with a progress bar."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dataset_id", type=int, help="The dataset snapshot to train on.")
        parser.add_argument(
            "--base-model", required=True, help="A model folder under ARBITER_MODEL_ROOTS."
        )
        parser.add_argument(
            "--config", help="Settings as JSON ('{\"max_steps\": 200}') or @file.json."
        )
        parser.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="One setting (repeatable), e.g. --set learning_rate=1e-4 --set max_steps=200.",
        )
        parser.add_argument(
            "--gpus", type=int, default=0, help="More than 1 launches one process per GPU."
        )
        parser.add_argument(
            "--user",
            help="Whose run it is (a manager of the campaign); default: the dataset's creator.",
        )
        parser.add_argument(
            "--now", action="store_true", help="Train here and now instead of queueing it."
        )

    def handle(self, *args, dataset_id: int, base_model: str, config: str | None, set: list[str], gpus: int,
               user: str | None, now: bool, **options) -> None:  # fmt: skip
        from training.services import training_run_create

        dataset = (
            Dataset.objects.select_related("campaign", "created_by").filter(pk=dataset_id).first()
        )
        if dataset is None:
            raise CommandError(f"No dataset with id {dataset_id}.")
        owner = dataset.created_by
        if user:
            owner = get_user_model().objects.filter(username=user).first()
            if owner is None:
                raise CommandError(f"--user: no user called {user!r}.")
        try:
            run = training_run_create(
                dataset=dataset, base_model_path=base_model, config=parse_config(config, set), gpus=gpus,
                created_by=owner, queue=not now,
            )  # fmt: skip
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        if not now:
            self.stdout.write(
                self.style.SUCCESS(f"Queued run {run.pk} ({run.config['output_dir']}).")
            )
            self.stdout.write(f"Follow it: python manage.py training_progress {run.pk}")
            return
        self.stdout.write(f"Training run {run.pk} here ({run.config['output_dir']}).")
        run = train_with_progress_bar(run.pk, self.stdout)
        report(self, run)


def train_with_progress_bar(run_id: int, out) -> Any:
    from tqdm import tqdm

    from training.execution import training_run_execute

    bar = tqdm(desc=f"run {run_id}", unit="step", file=out, dynamic_ncols=True)

    def on_progress(step: int, total: int, metrics: dict[str, float]) -> None:
        bar.total = total
        bar.n = step
        shown = {
            k: round(v, 4)
            for k, v in metrics.items()
            if k in ("loss", "accuracy", "eval_loss", "eval_accuracy")
        }
        bar.set_postfix(shown, refresh=False)
        bar.refresh()

    try:
        return training_run_execute(run_id=run_id, on_progress=on_progress)
    finally:
        bar.close()


def report(command: BaseCommand, run: Any) -> None:
    """Print how the run ended; fail the command unless it succeeded."""
    if run.status == "succeeded":
        accuracy = (run.summary.get("metrics") or {}).get("eval_accuracy")
        command.stdout.write(command.style.SUCCESS(
            f"Run {run.pk} succeeded after {run.step} steps"
            + (f", held-out accuracy {accuracy:.4f}" if accuracy is not None else "")
            + f". Model: {run.artifacts.get('model')}"
        ))  # fmt: skip
        return
    if run.status == "cancelled":
        raise CommandError(
            f"Run {run.pk} was cancelled at step {run.step}/{run.total_steps}; resume it to continue."
        )
    raise CommandError(f"Run {run.pk} {run.status}: {run.error or 'no error recorded'}")
