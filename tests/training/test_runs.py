"""Training runs end to end: create (validated, queued after commit) -> the worker trains the tiny
reward model -> succeeded with metrics, log and artifacts; cancel and resume; accelerate launch."""

import json
from pathlib import Path

import pytest

from annotation.errors import ApplicationError, ConflictError
from training.checkpoints import last_checkpoint
from training.execution import training_run_execute
from training.models import TrainingMetric, TrainingRun
from training.services import training_run_cancel, training_run_create, training_run_resume
from training.tasks import run_training

from .support import TINY_CONFIG, make_ready_dataset

pytestmark = [pytest.mark.training, pytest.mark.django_db]


@pytest.fixture
def ready_dataset(make_campaign, annotator, researcher, manager):
    return make_ready_dataset(make_campaign, annotator, researcher, manager)


def _create(dataset, manager, tiny_models, **overrides):
    kwargs = {
        "dataset": dataset,
        "base_model_path": str(tiny_models.reward_base),
        "config": dict(TINY_CONFIG),
        "created_by": manager,
    }
    kwargs.update(overrides)
    return training_run_create(**kwargs)


def test_create_stores_the_full_config_and_queues_after_commit(
    training_settings, ready_dataset, manager, tiny_models, django_capture_on_commit_callbacks
):
    """The run is stored queued with every config field filled in, and its task is sent on commit."""
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = _create(ready_dataset, manager, tiny_models)
    assert run.status == "queued" and run.kind == "reward"
    assert run.campaign_id == ready_dataset.campaign_id
    assert run.config["learning_rate"] == 3e-3 and run.config["truncation"] == "truncate_left"  # a default
    assert run.config["output_dir"] == str(training_settings.ARBITER_TRAINING_DIR / f"run-{run.pk}")
    assert run.base_model_path == str(tiny_models.reward_base.resolve())
    assert run.celery_task_id
    assert len(callbacks) >= 1  # the task is sent only once the transaction commits
    assert "Queued by manager" in run.log_lines.get().message


def test_the_task_trains_to_success_with_metrics_log_and_artifacts(
    training_settings, ready_dataset, manager, tiny_models
):
    """create -> Celery task -> succeeded: metrics per logged step, a log, a model that scores."""
    run = _create(ready_dataset, manager, tiny_models)
    status = run_training.apply(args=[run.pk], task_id=run.celery_task_id).get()
    run.refresh_from_db()
    assert status == "succeeded", run.error
    assert (run.step, run.total_steps) == (6, 6)
    assert run.started_at and run.finished_at and run.heartbeat_at and run.error == ""
    train = TrainingMetric.objects.filter(run=run, split="train").order_by("step")
    held_out = TrainingMetric.objects.filter(run=run, split="eval").order_by("step")
    assert [m.step for m in train] == [2, 4, 6]
    assert [m.step for m in held_out] == [3, 6]
    assert {"loss", "accuracy"} <= set(train[0].values) and "eval_accuracy" in held_out[0].values
    model = Path(run.artifacts["model"])
    assert (model / "model.safetensors").is_file() and (model / "arbiter_reward.json").is_file()
    assert Path(run.artifacts["checkpoint"]).name == "checkpoint-6"
    assert 0.0 <= run.summary["metrics"]["eval_accuracy"] <= 1.0
    assert run.summary["counts"]["pairs"] == 12
    log = [line.message for line in run.log_lines.order_by("pk")]
    assert log[1].startswith("Started on ") and "from the base model: 12 training rows" in log[1]
    assert any(line.startswith("Step 2/6: loss ") for line in log)
    assert any(line.startswith("Held-out evaluation at step 3/6: loss ") for line in log)
    assert log[-1].startswith("Succeeded after 6 steps")

    from training.scoring import load_scorer

    scorer = load_scorer(model)
    prompt = [{"role": "user", "content": "Question 3?"}]
    assert len(scorer.score([(prompt, "Answer one to 3"), (prompt, "Answer two to 3")])) == 2


def test_a_task_delivered_twice_trains_once(training_settings, ready_dataset, manager, tiny_models):
    """Only the task the run was queued with claims it; another copy, or a second delivery, does nothing."""
    run = _create(ready_dataset, manager, tiny_models, config={**TINY_CONFIG, "max_steps": 2, "eval_fraction": 0.0})
    assert run_training.apply(args=[run.pk], task_id="not-the-queued-task").get() == "queued"
    assert run_training.apply(args=[run.pk], task_id=run.celery_task_id).get() == "succeeded"
    assert run_training.apply(args=[run.pk], task_id=run.celery_task_id).get() == "succeeded"
    assert TrainingRun.objects.get(pk=run.pk).log_lines.filter(message__startswith="Started on").count() == 1


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"learning_rate": 5}, "config.learning_rate: `learning_rate` must be > 0 and < 1, got 5."),
        ({"learning_rat": 0.1}, "config.learning_rat: Unknown config key `learning_rat`. Did you mean `learning_rate`?"),
        ({"truncation": "right"}, "config.truncation: `truncation` must be one of 'truncate_left', 'drop', got 'right'."),
        ({"max_steps": "ten"}, "config.max_steps: `max_steps` must be an integer, got 'ten'."),
        ({"output_dir": "/tmp/x"}, "config.output_dir: is set by Arbiter for each run"),
        ([1, 2], "config: must be an object of reward model settings, got list"),
    ],
)
def test_an_invalid_config_is_refused_naming_the_field(
    training_settings, ready_dataset, manager, tiny_models, config, message
):
    """Nothing is stored, and the error names the field (and the fix where there is one)."""
    with pytest.raises(ApplicationError) as caught:
        _create(ready_dataset, manager, tiny_models, config=config)
    assert caught.value.message.startswith(message), caught.value.message
    field = message.split(":", 1)[0]
    assert field in caught.value.extra["fields"]
    assert not TrainingRun.objects.exists()


def test_a_model_path_outside_the_roots_is_refused(training_settings, ready_dataset, manager, tiny_models, tmp_path):
    """Only folders under ARBITER_MODEL_ROOTS load; hub ids never do."""
    training_settings.ARBITER_MODEL_ROOTS = [tmp_path / "models"]
    with pytest.raises(ApplicationError) as caught:
        _create(ready_dataset, manager, tiny_models)
    assert caught.value.message.startswith("base_model_path: The model path ")
    assert "is outside the model roots" in caught.value.message
    with pytest.raises(ApplicationError, match="looks like a Hugging Face Hub id; Arbiter never downloads models"):
        _create(ready_dataset, manager, tiny_models, base_model_path="gpt2")
    assert not TrainingRun.objects.exists()


def test_only_the_campaigns_managers_start_runs(training_settings, ready_dataset, researcher, tiny_models):
    with pytest.raises(ApplicationError, match="Only the campaign's managers"):
        _create(ready_dataset, researcher, tiny_models)
    assert not TrainingRun.objects.exists()


def test_cancel_mid_run_ends_cancelled_with_a_checkpoint_and_resume_finishes_it(
    training_settings, ready_dataset, manager, tiny_models
):
    """Cancel stops the run after a step with a checkpoint; resume continues there to the same total."""
    training_settings.ARBITER_TRAINING_CANCEL_POLL_SECONDS = 0  # read the flag after every step
    config = {**TINY_CONFIG, "max_steps": 40, "logging_steps": 1, "save_steps": 100, "eval_steps": None}
    run = _create(ready_dataset, manager, tiny_models, config=config)

    def cancel_at_step_two(step, total, metrics):
        if step == 2:
            training_run_cancel(run=run, by=manager)

    run = training_run_execute(run_id=run.pk, task_id=run.celery_task_id, on_progress=cancel_at_step_two)
    assert run.status == "cancelled", run.error
    # Asked during step 2's log; seen when step 3 ends, which is saved as the checkpoint.
    assert run.cancel_requested and run.step == 3 and run.total_steps == 40
    checkpoint = Path(run.artifacts["checkpoint"])
    assert checkpoint.name == f"checkpoint-{run.step}" and (checkpoint / "trainer_state.json").is_file()
    assert "Cancel requested by manager" in " ".join(run.log_lines.values_list("message", flat=True))
    stopped_at = run.step

    with pytest.raises(ConflictError, match="This run has already cancelled; there is nothing to cancel."):
        training_run_cancel(run=run, by=manager)

    run = training_run_resume(run=run, by=manager)
    assert run.status == "queued" and not run.cancel_requested and run.finished_at is None
    assert run.log_lines.last().message == f"Resumed by manager from checkpoint-{stopped_at} (step {stopped_at} of 40)."
    run = training_run_execute(run_id=run.pk, task_id=run.celery_task_id)
    assert run.status == "succeeded", run.error
    assert (run.step, run.total_steps) == (40, 40)
    steps = list(TrainingMetric.objects.filter(run=run, split="train").order_by("step").values_list("step", flat=True))
    assert steps == list(range(1, 41))  # each step logged once, across the two attempts
    state = json.loads((Path(run.artifacts["checkpoint"]) / "trainer_state.json").read_text())
    assert state["global_step"] == 40
    assert f"resuming from checkpoint-{stopped_at}" in run.log_lines.filter(message__startswith="Started").last().message


def test_cancel_before_it_starts_and_resume_rules(training_settings, ready_dataset, manager, tiny_models):
    run = _create(ready_dataset, manager, tiny_models)
    with pytest.raises(ConflictError, match="Only a failed or cancelled run can be resumed; this one is queued."):
        training_run_resume(run=run, by=manager)
    run = training_run_cancel(run=run, by=manager)
    assert run.status == "cancelled" and run.finished_at is not None
    # The task sent before the cancel arrives later and does nothing.
    assert training_run_execute(run_id=run.pk, task_id=run.celery_task_id).status == "cancelled"
    assert last_checkpoint(run.config["output_dir"]) is None
    run = training_run_resume(run=run, by=manager)
    assert run.log_lines.last().message == "Resumed by manager from the start (no checkpoint was saved)."


def test_a_failing_run_records_the_error(training_settings, ready_dataset, manager, tiny_models):
    """An error in training fails the run with a message the manager can act on; nothing is hidden."""
    config = {**TINY_CONFIG, "max_length": 4096}  # beyond the tiny model's 512 positions
    run = _create(ready_dataset, manager, tiny_models, config=config)
    run = training_run_execute(run_id=run.pk, task_id=run.celery_task_id)
    assert run.status == "failed" and run.finished_at is not None
    assert run.error == (
        "`max_length` (4096) exceeds the base model's position limit (max_position_embeddings=512). "
        "Set max_length to 512 or less."
    )
    assert run.log_lines.last().message == f"Failed: {run.error}"
    assert run.log_lines.last().level == "error"


def test_accelerate_launch_trains_in_a_subprocess(training_settings, ready_dataset, manager, tiny_models):
    """Through `accelerate launch --cpu --num_processes 1 -m training.launch`: progress comes back live."""
    training_settings.ARBITER_TRAINING_LAUNCHER = "accelerate"
    run = _create(ready_dataset, manager, tiny_models)
    run = training_run_execute(run_id=run.pk, task_id=run.celery_task_id)
    assert run.status == "succeeded", run.error
    assert (run.step, run.total_steps) == (6, 6)
    launched = run.log_lines.get(message__startswith="Launching: ").message
    assert " launch --num_processes 1 " in launched and " --cpu -m training.launch " in launched
    assert launched.endswith(f"run-{run.pk}/launch.json")
    assert list(TrainingMetric.objects.filter(run=run, split="train").values_list("step", flat=True)) == [2, 4, 6]
    assert (Path(run.artifacts["model"]) / "model.safetensors").is_file()
    assert run.summary["counts"]["pairs"] == 12
