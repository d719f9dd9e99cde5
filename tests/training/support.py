"""Helpers shared by the training-run tests (the fixtures are in conftest.py).

Runs train the tiny local models (`tiny_models`, built once per session) on a dataset snapshot
built from real judgments made through the serving services.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from annotation.models import Campaign
from annotation.services.datasets import dataset_build, dataset_create
from annotation.services.serving import assignment_lease_next, judgment_submit

# Small enough that a run takes seconds on a laptop CPU; checkpoints and evaluations happen.
TINY_CONFIG = {
    "learning_rate": 3e-3,
    "max_steps": 6,
    "per_device_train_batch_size": 4,
    "per_device_eval_batch_size": 8,
    "logging_steps": 2,
    "save_steps": 3,
    "eval_steps": 3,
    "eval_fraction": 0.25,
    "max_length": 64,
}


def judge_all(campaign: Campaign, users, *, prefer: int = 0) -> int:
    """Judge every open item of the campaign as `users`, preferring the response at `prefer`; return how many."""
    done = 0
    for user in users:
        while (a := assignment_lease_next(campaign_id=campaign.pk, annotator=user)) is not None:
            preferred = a.item.item_responses.get(position=prefer).response_id
            judgment_submit(
                assignment_id=a.pk,
                annotator=user,
                answer={"outcome": "preferred", "preferred_response_id": preferred, "strength": 2},
            )
            done += 1
    return done


def build_dataset(campaign: Campaign, manager):
    """Snapshot the campaign (majority, few bootstrap rounds) and build it now."""
    dataset = dataset_create(
        campaign=campaign, method="majority", params={"bootstrap_rounds": 20}, created_by=manager
    )
    dataset = dataset_build(dataset_id=dataset.pk)
    assert dataset.status == "ready", dataset.error
    return dataset


def apply_training_settings(settings, tiny_models, tmp_path):
    """Model roots holding the tiny models, a fresh training folder, and a slow heartbeat.

    (A django_db test holds SQLite's write lock for the whole test, so a heartbeat thread would
    only wait on it; the recovery tests, on committed data, beat fast.) The `training_settings`
    fixture of tests/training/conftest.py applies it.
    """
    settings.ARBITER_MODEL_ROOTS = [tiny_models.reward_base.parent]
    settings.ARBITER_TRAINING_DIR = tmp_path / "runs"
    settings.ARBITER_TRAINING_HEARTBEAT_SECONDS = 3600
    settings.ARBITER_TRAINING_LAUNCHER = "auto"
    return settings


def make_ready_dataset(make_campaign, annotator, researcher, manager):
    """A ready snapshot of an active campaign of 12 pairwise items, each judged once (the first
    response preferred), with `researcher` a researcher of the campaign."""
    from annotation.models import Role
    from annotation.services.campaigns import membership_add

    campaign = make_campaign(items=12, overlap=1, annotators=[annotator])
    membership_add(campaign=campaign, user=researcher, role=Role.RESEARCHER)
    assert judge_all(campaign, [annotator]) == 12
    return build_dataset(campaign, manager)


def wait_for(
    predicate: Callable[[], object], *, timeout: float, interval: float = 0.1, what: str = "", log: Path | None = None
) -> object:
    """Poll until `predicate()` is truthy and return it; fail after `timeout` seconds (showing `log`'s end)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    tail = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""
    pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}\n{tail}")


@contextlib.contextmanager
def private_broker(folder: Path) -> Iterator[dict]:
    """Point this process's Celery app at a filesystem broker in `folder` (no other worker reads it)."""
    from config.celery import app

    options = {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "control_folder": str(folder / "control"),
        "store_processed": False,
    }
    for key in ("data_folder_in", "control_folder"):
        os.makedirs(options[key], exist_ok=True)
    saved = (app.conf.broker_url, app.conf.broker_transport_options, app._pool, app.amqp._producer_pool)
    app.conf.broker_url = "filesystem://"
    app.conf.broker_transport_options = options
    # The connection and producer pools keep the broker they were made with: start new ones.
    app._pool = app.amqp._producer_pool = None
    try:
        yield options
    finally:
        if app._pool is not None:
            app._pool.force_close_all()
        app.conf.broker_url, app.conf.broker_transport_options, app._pool, app.amqp._producer_pool = saved
