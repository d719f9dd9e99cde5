"""PPO as a training run: prompts of a campaign, the policy, a reward model from the config; on the
`training` queue like the reward model, with per-step metrics, warnings and samples, cancel and
resume."""

from pathlib import Path

import pytest

from annotation.errors import ApplicationError
from training.execution import training_run_execute
from training.models import TrainingMetric
from training.services import training_run_cancel, training_run_create, training_run_resume
from training.tasks import run_training

pytestmark = [pytest.mark.training, pytest.mark.django_db]

PPO_CONFIG = {
    "learning_rate": 3e-3,
    "num_steps": 4,
    "batch_size": 4,
    "mini_batch_size": 2,
    "num_ppo_epochs": 1,
    "response_length": 6,
    "save_steps": 100,
    "sample_steps": 2,
    "sample_rows": 2,
    "seed": 0,
}


@pytest.fixture
def campaign(make_campaign, annotator, manager):
    return make_campaign(items=6, overlap=1, annotators=[annotator])


def _create(campaign, manager, tiny_models, **overrides):
    config = {**PPO_CONFIG, "reward_model_path": str(tiny_models.reward_base)}
    kwargs = {
        "kind": "ppo",
        "dataset": None,
        "campaign": campaign,
        "base_model_path": str(tiny_models.causal_lm),
        "config": config,
        "created_by": manager,
    }
    kwargs.update(overrides)
    return training_run_create(**kwargs)


def test_a_ppo_run_trains_on_the_campaigns_prompts_to_success(training_settings, campaign, manager, tiny_models):
    """The task runs PPO on the campaign's 6 prompts: PPO metrics per step, the sample table, a saved policy."""
    run = _create(campaign, manager, tiny_models)
    assert run.config["reward_model_path"] == str(tiny_models.reward_base.resolve())
    assert run_training.apply(args=[run.pk], task_id=run.celery_task_id).get() == "succeeded"
    run.refresh_from_db()
    assert (run.step, run.total_steps) == (4, 4), run.error
    steps = TrainingMetric.objects.filter(run=run).order_by("step")
    assert [m.step for m in steps] == [1, 2, 3, 4]
    assert {"objective/scores", "objective/kl", "policy/clipfrac_avg", "loss/value_avg"} <= set(steps[0].values)
    samples = run.summary["samples"]
    assert samples["step"] == 4 and len(samples["rows"]) == 2
    assert set(samples["rows"][0]) == {"prompt", "response", "score"}
    assert samples["rows"][0]["prompt"].startswith("Question ")
    assert "objective/scores" in run.summary["metrics"]
    model = Path(run.artifacts["model"])
    assert (model / "model.safetensors").is_file() and (model / "arbiter_ppo.json").is_file()
    log = [line.message for line in run.log_lines.order_by("pk")]
    assert "from the base model: 6 training rows" in log[1]
    assert any(line.startswith("Step 2/4: score ") and ", kl " in line for line in log)
    assert log[-1].startswith("Succeeded after 4 steps")


def test_a_ppo_run_needs_a_reward_model_under_the_roots(training_settings, campaign, manager, tiny_models, tmp_path):
    """No reward model, or one outside the model roots, is refused at creation naming the config field."""
    with pytest.raises(ApplicationError) as caught:
        _create(campaign, manager, tiny_models, config=dict(PPO_CONFIG))
    assert list(caught.value.extra["fields"]) == ["config.reward_model_path"]
    assert "is required for a PPO run" in caught.value.message
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    with pytest.raises(ApplicationError) as caught:
        _create(campaign, manager, tiny_models, config={**PPO_CONFIG, "reward_model_path": str(outside)})
    assert list(caught.value.extra["fields"]) == ["config.reward_model_path"]
    assert "is outside the model roots" in caught.value.message
    with pytest.raises(ApplicationError) as caught:
        _create(campaign, manager, tiny_models, gpus=2)
    assert list(caught.value.extra["fields"]) == ["gpus"]
    assert "a PPO run trains on one device" in caught.value.message


def test_a_cancelled_ppo_run_resumes_from_its_checkpoint_and_finishes(
    training_settings, campaign, manager, tiny_models
):
    """Cancelled after step 2 (the stop saves a checkpoint), resumed: it restarts at step 2 and ends at 4/4."""
    training_settings.ARBITER_TRAINING_CANCEL_POLL_SECONDS = 0  # read the flag after every step
    run = _create(campaign, manager, tiny_models)

    def cancel_at_step_two(step, total, metrics):
        if step == 2:
            training_run_cancel(run=run, by=manager)

    run = training_run_execute(run_id=run.pk, task_id=run.celery_task_id, on_progress=cancel_at_step_two)
    assert run.status == "cancelled", run.error
    assert run.step == 2 and Path(run.artifacts["checkpoint"]).name == "checkpoint-2"
    run = training_run_resume(run=run, by=manager)
    run = training_run_execute(run_id=run.pk, task_id=run.celery_task_id)
    assert run.status == "succeeded", run.error
    assert (run.step, run.total_steps) == (4, 4)
    assert [m.step for m in TrainingMetric.objects.filter(run=run).order_by("step")] == [1, 2, 3, 4]
    assert any("resuming from checkpoint-2 (step 2)" in line.message for line in run.log_lines.all())
