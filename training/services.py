"""Training runs: create (validated, then queued after commit), cancel, resume, recover; and the
rules that start a reward-model run as judgments come in or when a campaign closes.

The worker's side of a run (claiming it, recording progress, finishing it) is in
`training.execution`; the Celery tasks that call it are in `training.tasks`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from annotation.errors import ApplicationError, ConflictError, ForbiddenError, field_error
from annotation.models import Campaign, Dataset, Role
from annotation.selectors import membership_role
from training import events
from training.checkpoints import checkpoint_step, last_checkpoint
from training.config import ConfigError
from training.model_paths import ModelPathError, resolve_model_path
from training.models import TrainingLogLine, TrainingRule, TrainingRun
from training.runner import SET_BY_ARBITER, get_trainer
from training.selectors import is_training_staff, training_judgment_count

logger = logging.getLogger(__name__)

MAX_GPUS = 64


def training_run_output_dir(run_id: int) -> Path:
    """Return the folder a run writes its checkpoints and model to."""
    return Path(settings.ARBITER_TRAINING_DIR) / f"run-{int(run_id)}"


def training_log(
    *, run_id: int, message: str, level: str = TrainingLogLine.Level.INFO
) -> TrainingLogLine:
    """Append a line to the run's log and tell its live pages (after commit)."""
    line = TrainingLogLine.objects.create(run_id=run_id, message=message, level=level)
    events.run_changed(run_id=run_id)
    return line


def training_config_clean(*, kind: str, config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the kind's full config (defaults filled in, no output_dir) or raise naming the field."""
    try:
        spec = get_trainer(kind)
    except ConfigError as exc:
        raise field_error("kind", str(exc)) from exc
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise field_error(
            "config",
            f"must be an object of {spec.title.lower()} settings, got {type(config).__name__}",
        )
    for name in SET_BY_ARBITER:
        if name in config:
            raise field_error(
                f"config.{name}",
                "is set by Arbiter for each run (a folder under ARBITER_TRAINING_DIR); leave it out",
            )
    try:
        built = spec.build_config({**config, **{name: "(set per run)" for name in SET_BY_ARBITER}})
    except ConfigError as exc:
        raise field_error(f"config.{exc.field}", str(exc)) from exc
    except TypeError as exc:  # a dataclass refusing an argument the config class did not check
        raise field_error("config", str(exc)) from exc
    cleaned = built.to_dict()
    for name in SET_BY_ARBITER:
        cleaned.pop(name, None)
    for name in spec.model_paths:
        if cleaned.get(name):
            cleaned[name] = _model_path(f"config.{name}", cleaned[name])
        elif name in spec.required_model_paths:
            raise field_error(
                f"config.{name}",
                f"is required for a {spec.title} run: a model folder under ARBITER_MODEL_ROOTS "
                "or a finished run's model",
            )
    return cleaned


def training_model_roots() -> list[Path]:
    """Return the folders models may be loaded from: the model roots and the runs' own folder."""
    return [*settings.ARBITER_MODEL_ROOTS, Path(settings.ARBITER_TRAINING_DIR)]


def _model_path(field_name: str, path: Any) -> str:
    try:
        return str(resolve_model_path(path, roots=training_model_roots()))
    except ModelPathError as exc:
        raise field_error(field_name, str(exc)) from exc


def training_model_path_clean(*, base_model_path: Any) -> str:
    """Return the real path of a base-model folder (see `training_model_roots`), or raise naming the field."""
    return _model_path("base_model_path", base_model_path)


def gpus_clean(gpus: Any) -> int:
    if isinstance(gpus, bool) or not isinstance(gpus, int) or not 0 <= gpus <= MAX_GPUS:
        raise field_error("gpus", f"must be a whole number from 0 to {MAX_GPUS}, got {gpus!r}")
    return gpus


def _require_manager(user: AbstractBaseUser, campaign: Campaign | None) -> None:
    if is_training_staff(user):
        return
    if campaign is None or membership_role(user=user, campaign=campaign) != Role.MANAGER:
        raise ForbiddenError(
            "Only the campaign's managers (and staff) start and change training runs."
        )


def _queue(run: TrainingRun) -> None:
    """Give the run a new task id and send its task once the transaction commits."""
    from training.tasks import run_training  # tasks import this module

    task_id = str(uuid.uuid4())
    run.celery_task_id = task_id
    run.save(update_fields=["celery_task_id"])
    run_id = run.pk
    transaction.on_commit(lambda: run_training.apply_async(args=[run_id], task_id=task_id))


@transaction.atomic
def training_run_create(
    *,
    dataset: Dataset | None,
    base_model_path: str,
    config: Mapping[str, Any] | None,
    created_by: AbstractBaseUser,
    kind: str = TrainingRun.Kind.REWARD,
    campaign: Campaign | None = None,
    gpus: int = 0,
    rule: TrainingRule | None = None,
    queue: bool = True,
) -> TrainingRun:
    """Validate the config and base model, store the run as queued, and queue it after commit.

    With `queue=False` the run is stored but not sent to a worker (the caller runs it).
    """
    if kind not in TrainingRun.Kind.values:
        raise field_error("kind", f"must be one of {', '.join(TrainingRun.Kind.values)}")
    cleaned = training_config_clean(kind=kind, config=config)
    spec = get_trainer(kind)
    if dataset is not None:
        if dataset.status == Dataset.Status.FAILED:
            raise field_error(
                "dataset_id",
                f"dataset v{dataset.version} failed to build ({dataset.error or 'no reason recorded'}); "
                "create a new snapshot and train on that",
            )
        campaign = dataset.campaign
    elif spec.data == "preference":
        raise field_error(
            "dataset_id", f"a {spec.title.lower()} run trains on a dataset snapshot; choose one"
        )
    gpus = gpus_clean(gpus)
    if gpus > 1 and not spec.multi_gpu:
        raise field_error("gpus", f"a {spec.title} run trains on one device; ask for 0 or 1 GPU")
    model_path = training_model_path_clean(base_model_path=base_model_path)
    _require_manager(created_by, campaign)

    run = TrainingRun.objects.create(
        kind=kind,
        dataset=dataset,
        campaign=campaign,
        rule=rule,
        base_model_path=model_path,
        config=cleaned,
        gpus=gpus,
        created_by=created_by,
        status=TrainingRun.Status.QUEUED,
    )
    output_dir = training_run_output_dir(run.pk)
    run.config = {**cleaned, "output_dir": str(output_dir)}
    run.artifacts = {"output_dir": str(output_dir)}
    run.save(update_fields=["config", "artifacts"])
    source = f"dataset v{dataset.version} of {campaign}" if dataset is not None else str(campaign)
    trigger = f" (rule {rule.pk}: {rule})" if rule is not None else ""
    training_log(
        run_id=run.pk,
        message=f"Queued by {created_by.get_username()}{trigger}: {spec.title.lower()} on {source}, "
        f"base model {model_path}, {gpus} GPU(s).",
    )
    if queue:
        _queue(run)
    return run


@transaction.atomic
def training_run_cancel(*, run: TrainingRun, by: AbstractBaseUser) -> TrainingRun:
    """Cancel a queued run now; ask a running one to stop at its next step (it saves a checkpoint)."""
    run = TrainingRun.objects.select_for_update().get(pk=run.pk)
    _require_manager(by, run.campaign)
    if run.status == TrainingRun.Status.QUEUED:
        run.status = TrainingRun.Status.CANCELLED
        run.cancel_requested = True
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "cancel_requested", "finished_at"])
        training_log(run_id=run.pk, message=f"Cancelled by {by.get_username()} before it started.")
    elif run.status == TrainingRun.Status.RUNNING:
        if not run.cancel_requested:
            run.cancel_requested = True
            run.save(update_fields=["cancel_requested"])
            training_log(
                run_id=run.pk,
                message=f"Cancel requested by {by.get_username()}: the run stops after its current step "
                "and saves a checkpoint to resume from.",
            )
    else:
        raise ConflictError(
            f"This run has already {run.status}; there is nothing to cancel.",
            extra={"status": run.status},
        )
    return run


@transaction.atomic
def training_run_resume(*, run: TrainingRun, by: AbstractBaseUser | None) -> TrainingRun:
    """Queue a failed or cancelled run again: from its last checkpoint, or from the start if it saved none.

    `by` is None when the worker-loss recovery resumes the run on its own.
    """
    run = TrainingRun.objects.select_for_update().get(pk=run.pk)
    if by is not None:
        _require_manager(by, run.campaign)
    if run.status not in (TrainingRun.Status.FAILED, TrainingRun.Status.CANCELLED):
        raise ConflictError(
            f"Only a failed or cancelled run can be resumed; this one is {run.status}.",
            extra={"status": run.status},
        )
    if run.dataset_id is not None and run.dataset.status == Dataset.Status.FAILED:
        raise ConflictError(
            f"Its dataset v{run.dataset.version} failed to build; start a new run on a new snapshot."
        )
    checkpoint = last_checkpoint(run.config.get("output_dir", training_run_output_dir(run.pk)))
    run.status = TrainingRun.Status.QUEUED
    run.cancel_requested = False
    run.error = ""
    run.finished_at = None
    run.heartbeat_at = None
    run.save(update_fields=["status", "cancel_requested", "error", "finished_at", "heartbeat_at"])
    who = (
        f"Resumed by {by.get_username()}"
        if by is not None
        else "Resumed automatically after the worker was lost,"
    )
    where = (
        f"from {checkpoint.name} (step {checkpoint_step(checkpoint)} of {run.total_steps or '?'})"
        if checkpoint is not None
        else "from the start (no checkpoint was saved)"
    )
    training_log(run_id=run.pk, message=f"{who} {where}.")
    _queue(run)
    return run


def training_runs_recover_stale(
    *, stale_after: float | None = None, now: datetime | None = None
) -> list[TrainingRun]:
    """Mark failed every running run whose heartbeat is older than `stale_after` seconds; return them.

    That is a run whose worker was killed (kill -9, out of memory, a lost machine): nothing else
    would ever end it. It can be resumed from its last checkpoint; up to
    ARBITER_TRAINING_AUTO_RESUME times per run it is requeued here automatically.
    """
    stale_after = settings.ARBITER_TRAINING_STALE_SECONDS if stale_after is None else stale_after
    cutoff = (now or timezone.now()) - timedelta(seconds=stale_after)
    stale = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    recovered = []
    for run_id in TrainingRun.objects.filter(stale, status=TrainingRun.Status.RUNNING).values_list(
        "pk", flat=True
    ):
        run = _recover_one(run_id, cutoff)
        if run is not None:
            recovered.append(run)
    return recovered


def _recover_one(run_id: int, cutoff: datetime) -> TrainingRun | None:
    with transaction.atomic():
        run = (
            TrainingRun.objects.select_for_update()
            .filter(pk=run_id, status=TrainingRun.Status.RUNNING)
            .first()
        )
        last_seen = None if run is None else (run.heartbeat_at or run.started_at)
        if run is None or (last_seen is not None and last_seen >= cutoff):
            return None  # finished, or beat again, meanwhile
        checkpoint = last_checkpoint(run.config.get("output_dir", training_run_output_dir(run.pk)))
        saved = (
            f"Resume it to continue from {checkpoint.name} (step {checkpoint_step(checkpoint)})."
            if checkpoint is not None
            else "It saved no checkpoint yet; resuming starts it again from the beginning."
        )
        run.status = TrainingRun.Status.FAILED
        run.finished_at = timezone.now()
        run.error = (
            f"The worker running this run ({run.worker or 'unknown'}) stopped sending heartbeats "
            f"(last at {last_seen:%Y-%m-%d %H:%M:%S} UTC, step {run.step}): it was killed or lost. {saved}"
        )
        run.artifacts = {**run.artifacts, "checkpoint": str(checkpoint) if checkpoint else None}
        run.save(update_fields=["status", "finished_at", "error", "artifacts"])
        training_log(run_id=run.pk, message=run.error, level=TrainingLogLine.Level.ERROR)
        logger.warning("training run %s: worker lost, marked failed", run.pk)
        if run.auto_resumes < settings.ARBITER_TRAINING_AUTO_RESUME:
            run.auto_resumes += 1
            run.save(update_fields=["auto_resumes"])
            run = training_run_resume(run=run, by=None)
    return run


# --- Rules: start a reward-model run as judgments come in, or when the campaign closes -------------


def training_rules_after_judgment(*, campaign_id: int) -> None:
    """Fire the campaign's every-N-judgments rules; run after a judgment commits.

    Registered as annotation's `judgment_recorded` hook (training.apps). Annotation announces
    judgments only for a campaign whose `announce_judgments` flag is set, and
    `training.rules` keeps that flag set exactly while the campaign has an active every-N rule.
    """
    training_rules_fire(campaign_id=campaign_id, kind=TrainingRule.Kind.EVERY_N_JUDGMENTS)


def training_rules_on_close(*, campaign_id: int) -> None:
    """Fire the campaign's on-close rules; run after the closing commits (the `campaign_closed` hook)."""
    if not TrainingRule.objects.filter(
        campaign_id=campaign_id, kind=TrainingRule.Kind.ON_CLOSE, is_active=True
    ).exists():
        return
    training_rules_fire(campaign_id=campaign_id, kind=TrainingRule.Kind.ON_CLOSE)


def training_rules_fire(
    *, campaign_id: int, kind: str, count: int | None = None
) -> list[TrainingRun]:
    """Fire the campaign's due rules of `kind` now; return the runs queued.

    Each rule fires in its own transaction, with its row locked: at most one of its runs is queued
    or running at a time, and an every-N rule fires once per threshold however many submits race.
    A rule that cannot start its run (say its base model was moved) records why in `last_error`;
    the judgment that triggered it is stored either way.
    """
    if count is None:
        count = training_judgment_count(campaign_id=campaign_id)
    queued = []
    rule_ids = TrainingRule.objects.filter(
        campaign_id=campaign_id, kind=kind, is_active=True
    ).values_list("pk", flat=True)
    for rule_id in list(rule_ids):
        run = _fire_one(rule_id, count)
        if run is not None:
            queued.append(run)
    return queued


def _fire_one(rule_id: int, count: int) -> TrainingRun | None:
    from annotation.services.datasets import dataset_create

    with transaction.atomic():
        rule = (
            TrainingRule.objects.select_for_update()
            .select_related("campaign", "created_by")
            .get(pk=rule_id)
        )
        if not rule.is_active:
            return None
        if (
            rule.kind == TrainingRule.Kind.EVERY_N_JUDGMENTS
            and count < rule.last_fired_count + rule.n
        ):
            return None
        if TrainingRun.objects.filter(rule=rule, status__in=TrainingRun.ACTIVE).exists():
            return None  # its current run is still queued or running; fire again after it ends
        try:
            with transaction.atomic():
                dataset = dataset_create(
                    campaign=rule.campaign,
                    method=rule.dataset_method,
                    params=rule.dataset_params,
                    created_by=rule.created_by,
                )
                run = training_run_create(
                    dataset=dataset,
                    base_model_path=rule.base_model_path,
                    config=rule.config,
                    created_by=rule.created_by,
                    gpus=rule.gpus,
                    rule=rule,
                )
        except ApplicationError as exc:
            rule.last_error = exc.message
            rule.save(update_fields=["last_error"])
            logger.warning("training rule %s could not start a run: %s", rule.pk, exc.message)
            return None
        rule.last_fired_count = count
        rule.last_error = ""
        rule.save(update_fields=["last_fired_count", "last_error"])
        return run
