"""The worker's side of a training run: claim it, train, record progress, finish it.

`training_run_execute` is what the Celery task (and `train_reward --now`) calls. It claims the
queued run (one conditional UPDATE, so a task delivered twice trains once), loads the rows the
kind trains on, and calls the kind's plain training function (`training.runner`) in this process,
or through `accelerate launch` when the run wants more than one GPU. Meanwhile:

- `on_step` stores the metrics of each logged step, the progress and a log line, and tells the
  run's live pages (after commit, through `training.events`);
- `should_stop` reads the run's `cancel_requested` flag, at most once a second;
- a heartbeat thread stamps `heartbeat_at` every ARBITER_TRAINING_HEARTBEAT_SECONDS, so a run
  whose worker was killed is found by `training_runs_recover_stale`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connections, transaction
from django.utils import timezone

from annotation.errors import ApplicationError
from annotation.models import Dataset
from training.checkpoints import checkpoint_step, last_checkpoint
from training.config import ConfigError
from training.model_paths import ModelPathError
from training.models import TrainingLogLine, TrainingMetric, TrainingRun
from training.runner import (
    LaunchError,
    RunSpec,
    accelerate_command,
    get_trainer,
    launch_with_accelerate,
    train_in_process,
)
from training.services import training_log, training_model_roots, training_run_output_dir

logger = logging.getLogger(__name__)

# Errors worth retrying the task for: the database was briefly unreachable or locked while the
# run was being claimed. Nothing had started, so the retry starts cleanly.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)

OnProgress = Callable[[int, int, dict[str, float]], None]


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def training_run_claim(*, run_id: int, task_id: str | None = None) -> TrainingRun | None:
    """Mark the queued run as running in this worker and return it; None if it is not queued.

    With `task_id`, only the task the run was last queued with may claim it, so a stale copy of
    an earlier task (redelivered after a crash) does nothing.
    """
    now = timezone.now()
    runs = TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED)
    if task_id is not None:
        runs = runs.filter(celery_task_id=task_id)
    with transaction.atomic():
        claimed = runs.update(
            status=TrainingRun.Status.RUNNING, heartbeat_at=now, worker=worker_name()
        )
        if not claimed:
            return None
        TrainingRun.objects.filter(pk=run_id, started_at__isnull=True).update(started_at=now)
    return TrainingRun.objects.select_related("dataset", "campaign").get(pk=run_id)


def training_run_execute(
    *, run_id: int, task_id: str | None = None, on_progress: OnProgress | None = None
) -> TrainingRun:
    """Train the queued run to its end (succeeded, failed or cancelled) and return it.

    A run that is not queued (cancelled meanwhile, or already taken) is returned untouched.
    Errors while claiming (TRANSIENT_ERRORS) propagate for the task to retry; once training has
    started, any error fails the run with its message and the run can be resumed.
    """
    run = training_run_claim(run_id=run_id, task_id=task_id)
    if run is None:
        return TrainingRun.objects.get(pk=run_id)
    heartbeat = _Heartbeat(run.pk, settings.ARBITER_TRAINING_HEARTBEAT_SECONDS)
    heartbeat.start()
    try:
        outcome = _train(run, on_progress)
    except Exception as exc:  # recorded on the run for its managers to read, and logged
        heartbeat.stop()
        _fail(run, exc)
    else:
        heartbeat.stop()
        _finish(run, outcome)
    return TrainingRun.objects.get(pk=run.pk)


# --- training ------------------------------------------------------------------------------------


def _train(run: TrainingRun, on_progress: OnProgress | None) -> dict[str, Any]:
    spec = get_trainer(run.kind)
    config = spec.build_config(run.config)
    output_dir = Path(run.config["output_dir"])
    rows, dataset_hash = _rows(run, spec.data)
    checkpoint = last_checkpoint(output_dir)
    resume = checkpoint is not None
    start = checkpoint_step(checkpoint) or 0
    with transaction.atomic():
        # The steps after the checkpoint are trained (and logged) again.
        TrainingMetric.objects.filter(run=run, step__gt=start).delete()
        TrainingRun.objects.filter(pk=run.pk).update(step=start)
        where = (
            f"resuming from {checkpoint.name} (step {start})" if resume else "from the base model"
        )
        training_log(
            run_id=run.pk,
            message=f"Started on {worker_name()}, {where}: {len(rows)} training rows"
            + (f", dataset {dataset_hash[:12]}" if dataset_hash else "")
            + ".",
        )
    recorder = _StepRecorder(run.pk, on_progress)
    should_stop = _CancelPoll(run.pk, settings.ARBITER_TRAINING_CANCEL_POLL_SECONDS)
    roots = [str(root) for root in training_model_roots()]
    if run.gpus > 1 or settings.ARBITER_TRAINING_LAUNCHER == "accelerate":
        output_dir.mkdir(parents=True, exist_ok=True)
        dataset_file = output_dir / "dataset.jsonl"
        with dataset_file.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        run_spec = RunSpec(
            kind=run.kind,
            config=run.config,
            dataset_file=str(dataset_file),
            base_model_path=run.base_model_path,
            model_roots=roots,
            dataset_hash=dataset_hash,
            resume=resume,
            stop_file=str(output_dir / "STOP"),
        )
        import torch

        cpu = not torch.cuda.is_available()
        processes = max(run.gpus, 1)
        spec_file = output_dir / "launch.json"
        command = accelerate_command(spec_file, num_processes=processes, cpu=cpu)
        shown = [Path(command[0]).name, *command[1:]]
        training_log(run_id=run.pk, message="Launching: " + " ".join(shown))
        return launch_with_accelerate(
            run_spec,
            spec_file=spec_file,
            num_processes=processes,
            on_step=recorder,
            should_stop=should_stop,
            cpu=cpu,
        )
    return train_in_process(
        spec,
        config,
        dataset=rows,
        base_model_path=run.base_model_path,
        model_roots=roots,
        dataset_hash=dataset_hash,
        resume=resume,
        on_step=recorder,
        should_stop=should_stop,
    )


def _rows(run: TrainingRun, data: str) -> tuple[list[dict[str, Any]], str]:
    """Return the rows the run trains on and the dataset's content hash."""
    from annotation import exports
    from annotation.models import Prompt
    from annotation.services.datasets import dataset_build

    dataset = run.dataset
    if dataset is not None and dataset.status == Dataset.Status.BUILDING:
        # A rule's snapshot may still be in the default queue; building it here is safe (it is built once).
        training_log(run_id=run.pk, message=f"Building dataset v{dataset.version} first.")
        dataset = dataset_build(dataset_id=dataset.pk)
    if dataset is not None and dataset.status != Dataset.Status.READY:
        raise ApplicationError(
            f"Dataset v{dataset.version} could not be built: {dataset.error or dataset.status}."
        )
    if data == "preference":
        return list(exports.preference_rows(dataset)), dataset.content_hash
    if data == "prompts":
        if dataset is not None:
            return list(exports.prompt_rows(dataset)), dataset.content_hash
        prompts = (
            Prompt.objects.filter(campaign_id=run.campaign_id)
            .order_by("pk")
            .values_list("messages", flat=True)
        )
        return [{"prompt": messages} for messages in prompts.iterator()], ""
    raise ApplicationError(f"Unknown training data kind {data!r}.")


class _StepRecorder:
    """`on_step`: store the step's metrics, progress and a log line; tell the live pages."""

    def __init__(self, run_id: int, on_progress: OnProgress | None) -> None:
        self.run_id = run_id
        self.on_progress = on_progress

    def __call__(
        self, step: int, total: int, metrics: dict[str, float], details: dict[str, Any] | None = None
    ) -> None:
        """Record one step; `details` (PPO) may carry the step's warnings and a sample table."""
        if details:
            self._details(step, details)
        held_out = any(name.startswith("eval_") for name in metrics)
        split = TrainingMetric.Split.EVAL if held_out else TrainingMetric.Split.TRAIN
        values = {name: float(value) for name, value in metrics.items()}
        total = max(total, step)
        with transaction.atomic():
            TrainingMetric.objects.update_or_create(
                run_id=self.run_id, step=step, split=split, defaults={"values": values}
            )
            TrainingRun.objects.filter(pk=self.run_id).update(
                step=step, total_steps=total, heartbeat_at=timezone.now()
            )
            training_log(run_id=self.run_id, message=metrics_line(step, total, split, values))
        if self.on_progress is not None:
            self.on_progress(step, total, values)


    def _details(self, step: int, details: dict[str, Any]) -> None:
        with transaction.atomic():
            for warning in details.get("warnings") or []:
                training_log(run_id=self.run_id, message=f"Warning: {warning}")
            samples = details.get("samples")
            if samples:
                run = TrainingRun.objects.select_for_update().get(pk=self.run_id)
                run.summary = {**run.summary, "samples": {"step": step, "rows": list(samples)}}
                run.save(update_fields=["summary"])


_LOGGED = (
    ("loss", "loss"),
    ("accuracy", "accuracy"),
    ("margin", "margin"),
    ("rewards/accuracies", "reward accuracy"),
    ("objective/scores", "score"),
    ("objective/kl", "kl"),
    ("objective/entropy", "entropy"),
    ("learning_rate", "lr"),
    ("lr", "lr"),
    ("grad_norm", "grad_norm"),
)


def metrics_line(step: int, total: int, split: str, values: dict[str, float]) -> str:
    """Return the log line of one logged step: the metrics people read first."""
    prefix = "eval_" if split == TrainingMetric.Split.EVAL else ""
    shown = []
    for name, label in _LOGGED:  # reward and DPO (Trainer names), then PPO's
        value = values.get(prefix + name)
        if value is not None:
            shown.append(f"{label} {value:.2e}" if label == "lr" else f"{label} {value:.4f}")
    head = f"Held-out evaluation at step {step}/{total}" if prefix else f"Step {step}/{total}"
    return head + (": " + ", ".join(shown) if shown else "")


class _CancelPoll:
    """`should_stop`: True once the run's cancel flag is set; reads the database at most every `every` s."""

    def __init__(self, run_id: int, every: float = 1.0) -> None:
        self.run_id = run_id
        self.every = every
        self._last = float("-inf")
        self._stop = False

    def __call__(self) -> bool:
        if not self._stop and time.monotonic() - self._last >= self.every:
            self._last = time.monotonic()
            self._stop = TrainingRun.objects.filter(pk=self.run_id, cancel_requested=True).exists()
        return self._stop


class _Heartbeat:
    """Stamp the run's `heartbeat_at` from a thread while it trains, whatever the trainer is doing."""

    def __init__(self, run_id: int, interval: float) -> None:
        self.run_id = run_id
        self.interval = max(float(interval), 0.05)
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"heartbeat-run-{run_id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=30)

    def _beat(self) -> None:
        try:
            while not self._stopped.wait(self.interval):
                try:
                    TrainingRun.objects.filter(
                        pk=self.run_id, status=TrainingRun.Status.RUNNING
                    ).update(heartbeat_at=timezone.now())
                except (
                    OperationalError,
                    InterfaceError,
                ):  # locked or reconnecting: the next beat retries
                    logger.warning(
                        "heartbeat of training run %s failed", self.run_id, exc_info=True
                    )
        finally:
            connections.close_all()  # this thread's connections only


# --- the end of a run ----------------------------------------------------------------------------


def _finish(run: TrainingRun, outcome: dict[str, Any]) -> None:
    now = timezone.now()
    checkpoint = outcome.get("checkpoint_dir")
    artifacts = {
        "output_dir": run.config["output_dir"],
        "model": outcome.get("artifact_dir"),
        "checkpoint": checkpoint,
    }
    fields: dict[str, Any] = {
        "step": outcome["global_step"],
        "total_steps": max(outcome["total_steps"], outcome["global_step"]),
        "artifacts": artifacts,
        "finished_at": now,
        "heartbeat_at": now,
        "error": "",
    }
    if outcome["status"] == "stopped":
        fields["status"] = TrainingRun.Status.CANCELLED
        message = (
            f"Cancelled at step {outcome['global_step']}/{outcome['total_steps']}; checkpoint saved "
            f"({Path(checkpoint).name if checkpoint else 'none'}). Resume to continue from it."
        )
    else:
        fields["status"] = TrainingRun.Status.SUCCEEDED
        # Keep what the steps stored (PPO's latest sample table) beside the final figures.
        stored = TrainingRun.objects.filter(pk=run.pk).values_list("summary", flat=True).first() or {}
        kept = {k: v for k, v in stored.items() if k == "samples"}
        fields["summary"] = {**kept, "metrics": outcome["metrics"], **outcome.get("details", {})}
        accuracy = outcome["metrics"].get("eval_accuracy")
        message = (
            f"Succeeded after {outcome['global_step']} steps"
            + (f" (held-out accuracy {accuracy:.4f})" if accuracy is not None else "")
            + f". Model saved to {outcome.get('artifact_dir')}."
        )
    with transaction.atomic():
        TrainingRun.objects.filter(pk=run.pk, worker=run.worker).update(**fields)
        training_log(run_id=run.pk, message=message)


def _fail(run: TrainingRun, exc: Exception) -> None:
    if isinstance(exc, ConfigError):
        message = f"config.{exc.field}: {exc}"
    elif isinstance(exc, ModelPathError):
        message = f"base_model_path: {exc}"
    elif isinstance(exc, ApplicationError):
        message = exc.message
    elif isinstance(exc, LaunchError | ValueError):
        message = str(exc)
    else:
        message = f"{type(exc).__name__}: {exc}"
    logger.error("training run %s failed: %s", run.pk, message, exc_info=exc)
    checkpoint = last_checkpoint(run.config.get("output_dir", training_run_output_dir(run.pk)))
    now = timezone.now()
    with transaction.atomic():
        TrainingRun.objects.filter(pk=run.pk, worker=run.worker).update(
            status=TrainingRun.Status.FAILED,
            error=message,
            finished_at=now,
            heartbeat_at=now,
            artifacts={**run.artifacts, "checkpoint": str(checkpoint) if checkpoint else None},
        )
        training_log(run_id=run.pk, message=f"Failed: {message}", level=TrainingLogLine.Level.ERROR)
