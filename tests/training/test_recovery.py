"""A worker killed mid-run (kill -9): the run stops beating, the stale-run recovery marks it failed
(resumable), and resuming it on a new worker finishes it from its checkpoint with the same total.

Real Celery workers (`celery -A config worker -Q training --pool solo`) run as subprocesses on a
filesystem broker in a temporary folder, sharing this test's database (the SQLite file, or the
PostgreSQL test database).
"""

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from tests.conftest import ROOT
from training.checkpoints import last_checkpoint
from training.models import TrainingMetric, TrainingRun
from training.services import training_run_create, training_run_resume, training_runs_recover_stale

from .support import TINY_CONFIG, build_dataset, judge_all, private_broker, wait_for

pytestmark = [pytest.mark.training, pytest.mark.django_db(transaction=True)]

HEARTBEAT = 0.3
STALE_AFTER = 2.0


@pytest.fixture
def world(settings, tiny_models, tmp_path, make_campaign, annotator, manager):
    """A ready dataset; every task this process sends goes to a broker only this test's workers read."""
    settings.ARBITER_MODEL_ROOTS = [tiny_models.reward_base.parent]
    settings.ARBITER_TRAINING_DIR = tmp_path / "runs"
    settings.ARBITER_TRAINING_AUTO_RESUME = 0
    with private_broker(tmp_path / "data" / "broker"):
        campaign = make_campaign(items=12, overlap=1, annotators=[annotator])
        judge_all(campaign, [annotator])
        yield build_dataset(campaign, manager)


def _database_url() -> str:
    """Return the URL of this test's database (SQLite file or PostgreSQL test database)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    auth = f"{user}:{db['PASSWORD']}@" if db.get("PASSWORD") else (f"{user}@" if user else "")
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def start_worker(tmp_path: Path, settings, name: str, *, stale_seconds: float = 3600) -> subprocess.Popen:
    """Start a real training worker on the private broker and this test's database."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": _database_url(),
        "ARBITER_DATA_DIR": str(tmp_path / "data"),  # its broker folders are data/broker/...
        "CELERY_BROKER_URL": "filesystem://",
        "ARBITER_MODEL_ROOTS": os.pathsep.join(str(r) for r in settings.ARBITER_MODEL_ROOTS),
        "ARBITER_TRAINING_DIR": str(settings.ARBITER_TRAINING_DIR),
        "ARBITER_TRAINING_HEARTBEAT_SECONDS": str(HEARTBEAT),
        "ARBITER_TRAINING_STALE_SECONDS": str(stale_seconds),  # by default the tests call the recovery
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "training", "--pool", "solo",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "INFO", "-n", f"{name}@%h"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_killed_worker_is_recovered_and_the_run_resumes_to_the_same_total(world, manager, settings, tmp_path):
    # Enough steps that the kill lands mid-run however fast this machine trains.
    config = {**TINY_CONFIG, "max_steps": 100, "logging_steps": 2, "save_steps": 10, "eval_steps": None}
    run = training_run_create(
        dataset=world, base_model_path=str(settings.ARBITER_MODEL_ROOTS[0] / "tiny-reward-base"),
        config=config, created_by=manager,
    )  # fmt: skip
    output_dir = Path(run.config["output_dir"])
    first = start_worker(tmp_path, settings, "first")
    try:
        # Wait until it has saved a checkpoint and gone past it, then kill the worker outright.
        wait_for(
            lambda: last_checkpoint(output_dir) is not None and TrainingRun.objects.get(pk=run.pk).step >= 12,
            timeout=180, what="the first worker to pass a checkpoint", log=tmp_path / "first.log",
        )  # fmt: skip
        # While it beats, the recovery leaves it alone.
        assert training_runs_recover_stale(stale_after=STALE_AFTER) == []
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        _stop(first)
    killed = TrainingRun.objects.get(pk=run.pk)
    assert killed.status == "running" and 12 <= killed.step < 100  # nothing else would ever end it
    checkpoint = last_checkpoint(output_dir)

    wait_for(
        lambda: killed.heartbeat_at < timezone.now() - timedelta(seconds=STALE_AFTER),
        timeout=STALE_AFTER + 5, what="the heartbeat to go stale",
    )  # fmt: skip
    recovered = training_runs_recover_stale(stale_after=STALE_AFTER)
    assert [r.pk for r in recovered] == [run.pk]
    run.refresh_from_db()
    assert run.status == "failed" and run.finished_at is not None
    assert "stopped sending heartbeats" in run.error and "it was killed or lost" in run.error
    assert f"Resume it to continue from {checkpoint.name}" in run.error
    assert training_runs_recover_stale(stale_after=STALE_AFTER) == []  # once

    run = training_run_resume(run=run, by=manager)
    second = start_worker(tmp_path, settings, "second")
    try:
        wait_for(
            lambda: TrainingRun.objects.get(pk=run.pk).status in TrainingRun.ENDED,
            timeout=240, what="the resumed run to end", log=tmp_path / "second.log",
        )  # fmt: skip
    finally:
        _stop(second)
    run.refresh_from_db()
    assert run.status == "succeeded", (run.error, (tmp_path / "second.log").read_text()[-3000:])
    assert (run.step, run.total_steps) == (100, 100)
    started = list(run.log_lines.filter(message__startswith="Started on").values_list("message", flat=True))
    assert len(started) == 2 and f"resuming from {checkpoint.name}" in started[1]
    steps = list(TrainingMetric.objects.filter(run=run, split="train").order_by("step").values_list("step", flat=True))
    assert steps == list(range(2, 101, 2))  # each logged step once, across both workers
    assert (Path(run.artifacts["model"]) / "model.safetensors").is_file()


def test_recovery_requeues_when_auto_resume_is_on(world, manager, settings, tmp_path):
    """With ARBITER_TRAINING_AUTO_RESUME=1 a lost run is queued again once, then left failed."""
    settings.ARBITER_TRAINING_AUTO_RESUME = 1
    run = training_run_create(
        dataset=world, base_model_path=str(settings.ARBITER_MODEL_ROOTS[0] / "tiny-reward-base"),
        config=dict(TINY_CONFIG), created_by=manager,
    )  # fmt: skip
    long_ago = timezone.now() - timedelta(minutes=10)
    for attempt in (1, 2):
        TrainingRun.objects.filter(pk=run.pk).update(
            status="running", started_at=long_ago, heartbeat_at=long_ago, worker="lost-host:1"
        )
        [recovered] = training_runs_recover_stale(stale_after=60)
        if attempt == 1:
            assert recovered.status == "queued" and recovered.auto_resumes == 1
            assert recovered.log_lines.last().message == (
                "Resumed automatically after the worker was lost, from the start (no checkpoint was saved)."
            )
        else:
            assert recovered.status == "failed" and recovered.auto_resumes == 1
    queued = list((tmp_path / "data" / "broker" / "queue").glob("*.training.msg"))
    assert len(queued) == 2  # the first queueing and the automatic resume



def test_a_starting_worker_ends_the_runs_a_dead_one_left_running(world, manager, settings, tmp_path):
    """The recovery also runs when a worker starts (Celery's worker_ready), before it takes tasks."""
    run = training_run_create(
        dataset=world, base_model_path=str(settings.ARBITER_MODEL_ROOTS[0] / "tiny-reward-base"),
        config=dict(TINY_CONFIG), created_by=manager,
    )  # fmt: skip
    long_ago = timezone.now() - timedelta(minutes=10)
    TrainingRun.objects.filter(pk=run.pk).update(
        status="running", started_at=long_ago, heartbeat_at=long_ago, worker="lost-host:1", celery_task_id="gone"
    )
    worker = start_worker(tmp_path, settings, "restarted", stale_seconds=60)
    try:
        wait_for(
            lambda: TrainingRun.objects.get(pk=run.pk).status == "failed",
            timeout=120, what="the starting worker to recover the run", log=tmp_path / "restarted.log",
        )  # fmt: skip
    finally:
        _stop(worker)
    run.refresh_from_db()
    assert "(lost-host:1) stopped sending heartbeats" in run.error


def test_a_killed_ppo_run_resumes_on_the_trajectory_it_would_have_taken(
    world, manager, settings, tmp_path, tiny_models
):
    """PPO, kill -9 mid-run, recovered, resumed on a new worker: the final policy equals the one an
    uninterrupted run ends with (policy, value model, optimizers, schedules, RNG and data position
    all come back from the checkpoint)."""
    import torch
    from safetensors.torch import load_file

    from training.ppo.config import PPOConfig
    from training.ppo.trainer import train_ppo

    config = {
        "learning_rate": 3e-3, "num_steps": 30, "batch_size": 4, "mini_batch_size": 2, "num_ppo_epochs": 1,
        "response_length": 6, "save_steps": 5, "sample_steps": None, "seed": 0,
        "reward_model_path": str(tiny_models.reward_base),
    }  # fmt: skip
    run = training_run_create(
        kind="ppo", dataset=None, campaign=world.campaign, base_model_path=str(tiny_models.causal_lm),
        config=config, created_by=manager,
    )  # fmt: skip
    output_dir = Path(run.config["output_dir"])
    first = start_worker(tmp_path, settings, "ppo-first")
    try:
        wait_for(
            lambda: last_checkpoint(output_dir) is not None and TrainingRun.objects.get(pk=run.pk).step >= 7,
            timeout=180, what="the PPO worker to pass a checkpoint", log=tmp_path / "ppo-first.log",
        )  # fmt: skip
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        _stop(first)
    checkpoint = last_checkpoint(output_dir)
    assert TrainingRun.objects.get(pk=run.pk).status == "running"
    wait_for(
        lambda: TrainingRun.objects.get(pk=run.pk).heartbeat_at < timezone.now() - timedelta(seconds=STALE_AFTER),
        timeout=STALE_AFTER + 5, what="the heartbeat to go stale",
    )  # fmt: skip
    assert [r.pk for r in training_runs_recover_stale(stale_after=STALE_AFTER)] == [run.pk]

    run = training_run_resume(run=TrainingRun.objects.get(pk=run.pk), by=manager)
    second = start_worker(tmp_path, settings, "ppo-second")
    try:
        wait_for(
            lambda: TrainingRun.objects.get(pk=run.pk).status in TrainingRun.ENDED,
            timeout=240, what="the resumed PPO run to end", log=tmp_path / "ppo-second.log",
        )  # fmt: skip
    finally:
        _stop(second)
    run.refresh_from_db()
    assert run.status == "succeeded", (run.error, (tmp_path / "ppo-second.log").read_text()[-3000:])
    assert (run.step, run.total_steps) == (30, 30)
    started = list(run.log_lines.filter(message__startswith="Started on").values_list("message", flat=True))
    assert len(started) == 2 and f"resuming from {checkpoint.name}" in started[1]
    steps = list(TrainingMetric.objects.filter(run=run).order_by("step").values_list("step", flat=True))
    assert steps == list(range(1, 31))

    # The same run, uninterrupted, in this process.
    prompts = [row for row in world.campaign.prompts.order_by("pk").values_list("messages", flat=True)]
    straight = train_ppo(
        PPOConfig.from_dict({**run.config, "output_dir": str(tmp_path / "straight")}), prompts=prompts,
        policy_path=run.base_model_path, reward_model_path=run.config["reward_model_path"],
    )  # fmt: skip
    resumed = load_file(Path(run.artifacts["model"]) / "model.safetensors")
    expected = load_file(straight.artifact_dir / "model.safetensors")
    assert resumed.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
