"""The training commands: build_tiny_models, train_reward (queued or --now), training_progress, score."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from training.execution import training_run_execute
from training.models import TrainingRun

from .support import TINY_CONFIG, make_ready_dataset

pytestmark = [pytest.mark.training, pytest.mark.django_db]


@pytest.fixture
def ready_dataset(make_campaign, annotator, researcher, manager):
    return make_ready_dataset(make_campaign, annotator, researcher, manager)


def _call(*args, **kwargs) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **kwargs)
    return out.getvalue()


def test_build_tiny_models_writes_models_a_pipeline_loads(tmp_path):
    from transformers import AutoModelForCausalLM, pipeline

    out = _call("build_tiny_models", str(tmp_path / "tiny"))
    assert f"reward-model base: {tmp_path / 'tiny' / 'tiny-reward-base'}" in out
    classifier = pipeline("text-classification", model=str(tmp_path / "tiny" / "tiny-reward-base"))
    [result] = classifier("User: Where is the red box?\n\nAssistant: Please, the cat found it.<eos>", function_to_apply="none")
    assert result["label"] == "reward" and isinstance(result["score"], float)
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "tiny" / "tiny-causal-lm").config.model_type == "llama"


def test_train_reward_now_trains_here_and_its_model_loads_in_a_pipeline(
    training_settings, ready_dataset, tiny_models, tmp_path
):
    from transformers import AutoTokenizer, pipeline

    out = _call("train_reward", ready_dataset.pk, "--base-model", str(tiny_models.reward_base),
                "--config", json.dumps(TINY_CONFIG), "--set", "max_steps=4", "--now")  # fmt: skip
    run = TrainingRun.objects.get()
    assert run.status == "succeeded" and run.step == 4 and run.config["max_steps"] == 4
    assert f"Run {run.pk} succeeded after 4 steps" in out
    # The saved reward model is a plain text-classification model: the pipeline scores as the scorer does.
    from training.scoring import load_scorer

    scorer = load_scorer(run.artifacts["model"])
    prompt = [{"role": "user", "content": "Question 2?"}]
    text = scorer.text(prompt, "Answer one to 2")
    tokenizer = AutoTokenizer.from_pretrained(run.artifacts["model"])
    assert tokenizer.eos_token in text
    [piped] = pipeline("text-classification", model=run.artifacts["model"])(text, function_to_apply="none")
    assert piped["score"] == pytest.approx(scorer.score([(prompt, "Answer one to 2")])[0], abs=1e-4)


def test_train_reward_refuses_bad_settings(training_settings, ready_dataset, tiny_models):
    with pytest.raises(CommandError, match="config.max_steps: `max_steps` must be >= 1, got 0."):
        _call("train_reward", ready_dataset.pk, "--base-model", str(tiny_models.reward_base), "--set", "max_steps=0")
    with pytest.raises(CommandError, match="--set 'max_steps': write it as key=value"):
        _call("train_reward", ready_dataset.pk, "--base-model", str(tiny_models.reward_base), "--set", "max_steps")
    with pytest.raises(CommandError, match="No dataset with id 999."):
        _call("train_reward", 999, "--base-model", str(tiny_models.reward_base))
    assert not TrainingRun.objects.exists()


def test_queued_then_followed_with_training_progress(
    training_settings, ready_dataset, tiny_models, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as sent:
        out = _call("train_reward", ready_dataset.pk, "--base-model", str(tiny_models.reward_base),
                    "--config", json.dumps(TINY_CONFIG))  # fmt: skip
    run = TrainingRun.objects.get()
    assert f"Queued run {run.pk}" in out and f"training_progress {run.pk}" in out and sent
    training_run_execute(run_id=run.pk, task_id=run.celery_task_id)  # what the worker does
    out = _call("training_progress", run.pk, "--interval", "0.1")
    assert "Step 2/6: loss" in out and f"Run {run.pk} succeeded after 6 steps" in out


def test_training_progress_fails_for_a_failed_run(training_settings, ready_dataset, tiny_models):
    with pytest.raises(CommandError, match="exceeds the base model's position limit"):
        _call("train_reward", ready_dataset.pk, "--base-model", str(tiny_models.reward_base),
              "--config", json.dumps({**TINY_CONFIG, "max_length": 4096}), "--now")  # fmt: skip
    run = TrainingRun.objects.get()
    with pytest.raises(CommandError, match=f"Run {run.pk} failed: `max_length` \\(4096\\) exceeds"):
        _call("training_progress", run.pk)


def test_score_command_scores_a_jsonl_file(training_settings, ready_dataset, tiny_models, tmp_path):
    _call("train_reward", ready_dataset.pk, "--base-model", str(tiny_models.reward_base),
          "--config", json.dumps(TINY_CONFIG), "--now")  # fmt: skip
    run = TrainingRun.objects.get()
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        json.dumps({"prompt": [{"role": "user", "content": "Question 5?"}], "response": "Answer one to 5", "id": "a"})
        + "\n\n" + json.dumps({"prompt": "Question 5?", "response": "Answer two to 5", "id": "b"}) + "\n"
    )
    rows = [json.loads(line) for line in _call("score", run.pk, str(pairs)).splitlines()]
    assert [r["id"] for r in rows] == ["a", "b"] and all(isinstance(r["score"], float) for r in rows)
    _call("score", run.pk, str(pairs), "--output", str(tmp_path / "scored.jsonl"))
    assert [json.loads(line)["score"] for line in (tmp_path / "scored.jsonl").read_text().splitlines()] == [
        r["score"] for r in rows
    ]
    pairs.write_text(json.dumps({"prompt": 3, "response": "x"}) + "\n")
    with pytest.raises(CommandError, match=r"pairs.jsonl, line 1: prompt: must be a list of messages or a string."):
        _call("score", run.pk, str(pairs))
