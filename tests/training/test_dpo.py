"""train_dpo: a tiny causal LM learns a preference; config errors; length policy; stop and resume;
DPO as a kind of training run."""

import json
import math
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.training
pytest.importorskip("trl")

from training.config import ConfigError  # noqa: E402
from training.dpo import DatasetError, DPOConfig, check_dpo_pairs, encode_dpo_pairs, train_dpo  # noqa: E402
from training.services import training_run_create  # noqa: E402
from training.tasks import run_training  # noqa: E402
from training.tiny import polite_preferences  # noqa: E402

from .support import make_ready_dataset  # noqa: E402


def config(tmp_path, **overrides) -> DPOConfig:
    values = dict(
        output_dir=str(tmp_path / "run"),
        beta=0.1,
        learning_rate=3e-3,
        max_steps=6,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=32,
        eval_fraction=0.2,
        eval_steps=None,
        logging_steps=1,
        save_steps=100,
        max_length=64,
        max_prompt_length=32,
        seed=0,
    )
    values.update(overrides)
    return DPOConfig(**values)


def test_the_policy_learns_a_known_preference(tiny_models, tmp_path):
    """On polite-vs-blunt replies the held-out implicit-reward accuracy ends far above chance.

    Before training the policy is the reference, so every implicit reward is 0 and no pair is
    ranked right; after 12 steps nearly every held-out pair is.
    """
    from safetensors.torch import load_file

    seen = []
    result = train_dpo(
        config(tmp_path, max_steps=12, per_device_train_batch_size=16, eval_steps=6, logging_steps=3),
        dataset=polite_preferences(200, seed=1),
        policy_path=tiny_models.causal_lm,
        dataset_hash="sha256:polite-200",
        on_step=lambda step, total, metrics: seen.append((step, total, metrics)),
    )
    assert result.status == "completed" and (result.global_step, result.total_steps) == (12, 12)
    assert result.counts == {
        "pairs": 200, "train_pairs": 160, "eval_pairs": 40, "prompt_truncated": 0, "reply_truncated": 0, "dropped": 0,
    }
    assert [e["step"] for e in result.eval_history] == [6, 12]
    assert result.metrics["eval_rewards/accuracies"] >= 0.9
    assert result.metrics["eval_rewards/margins"] > 0.5
    assert result.eval_history[-1]["eval_rewards/margins"] > result.eval_history[0]["eval_rewards/margins"] > 0
    train = [m for _, _, m in seen if "loss" in m]
    assert [s for s, _, m in seen if "loss" in m] == [3, 6, 9, 12]
    assert all(math.isfinite(m["loss"]) for m in train) and train[-1]["loss"] < train[0]["loss"] < math.log(2) + 1e-3
    assert {"rewards/accuracies", "rewards/margins", "rewards/chosen", "logps/chosen"} <= set(train[0])

    before = load_file(tiny_models.causal_lm / "model.safetensors")
    after = load_file(result.artifact_dir / "model.safetensors")
    assert sum(not (before[k] == after[k]).all() for k in before) > len(before) // 2
    summary = json.loads((result.artifact_dir / "arbiter_dpo.json").read_text())
    assert summary["dataset_hash"] == "sha256:polite-200" and summary["counts"] == result.counts
    assert summary["reference_path"] == summary["policy_path"] == str(tiny_models.causal_lm.resolve())
    card = (result.artifact_dir / "README.md").read_text()
    assert "Loss `sigmoid`: `-logsigmoid(beta * margin)`" in card and "| eval_rewards/accuracies |" in card
    assert (result.artifact_dir / "tokenizer.json").is_file()


def test_config_errors_name_the_field():
    """Each bad value is refused when the config is made, naming the field and the fix."""
    cases = [
        (dict(beta=0), "beta", "`beta` must be > 0, got 0. Use 0.1"),
        (dict(loss_type="kto"), "loss_type", "`loss_type` must be one of 'sigmoid', 'ipo', 'hinge', 'sigmoid_norm'"),
        (dict(learning_rate=2), "learning_rate", "`learning_rate` must be > 0 and < 1, got 2."),
        (dict(max_prompt_length=512, max_length=512), "max_prompt_length",
         "`max_prompt_length` (512) must be below `max_length` (512)"),
        (dict(truncation="right"), "truncation", "`truncation` must be one of 'truncate_left', 'drop'"),
        (dict(eval_fraction=1.0), "eval_fraction", "`eval_fraction` must be >= 0 and < 1, got 1.0."),
        (dict(per_device_train_batch_size=0), "per_device_train_batch_size",
         "`per_device_train_batch_size` must be >= 1, got 0."),
        (dict(max_steps="10"), "max_steps", "`max_steps` must be an integer, got '10'."),
        (dict(output_dir=" "), "output_dir", "`output_dir` must be a non-empty folder path string."),
    ]
    for overrides, field, message in cases:
        with pytest.raises(ConfigError, match=re.escape(message)) as info:
            DPOConfig(**{"output_dir": "/tmp/x", **overrides})
        assert info.value.field == field, overrides
    with pytest.raises(ConfigError, match=re.escape("Unknown config key `betta`. Did you mean `beta`?")):
        DPOConfig.from_dict({"output_dir": "/tmp/x", "betta": 0.2})
    cfg = DPOConfig(output_dir="/tmp/x", beta=0.2, loss_type="ipo")
    assert DPOConfig.from_dict(cfg.to_dict()) == cfg


def test_rows_are_checked_and_implicit_prompts_split():
    """Bad rows name the row and field; without a prompt the shared opening turns become it."""
    user = {"role": "user", "content": "Hi?"}
    rows = [
        {"chosen": [user, {"role": "assistant", "content": "Hello!"}],
         "rejected": [user, {"role": "assistant", "content": "What."}]},
        polite_preferences(1)[0],
    ]
    pairs = check_dpo_pairs(rows)
    assert pairs[0].prompt == [user] and pairs[0].chosen == [{"role": "assistant", "content": "Hello!"}]
    with pytest.raises(DatasetError, match=re.escape("row 1: rejected: missing")):
        check_dpo_pairs([rows[0], {"prompt": [user], "chosen": rows[0]["chosen"][1:]}])
    with pytest.raises(DatasetError, match=re.escape("row 0: prompt: DPO needs the conversation the replies answer")):
        check_dpo_pairs([{"chosen": [{"role": "assistant", "content": "a"}],
                          "rejected": [{"role": "assistant", "content": "b"}]}, rows[0]])
    with pytest.raises(DatasetError, match="dataset has 1 row"):
        check_dpo_pairs(rows[:1])


def test_length_policy_is_counted_never_silent(tiny_models):
    """Long prompts are cut from the front, long replies at the end, or the pair dropped; each is counted."""
    from transformers import AutoTokenizer

    from training.generation import encode_prompt

    tokenizer = AutoTokenizer.from_pretrained(tiny_models.causal_lm)
    long_prompt = [{"role": "user", "content": "Where is the old map? " * 12}]
    short = [{"role": "user", "content": "Where is it?"}]
    reply = [{"role": "assistant", "content": "Please, the cat found the old map. " * 4}]
    pairs = check_dpo_pairs([
        {"prompt": long_prompt, "chosen": reply, "rejected": [{"role": "assistant", "content": "No."}]},
        {"prompt": short, "chosen": [{"role": "assistant", "content": "Here."}],
         "rejected": [{"role": "assistant", "content": "No."}]},
    ])
    rows, report = encode_dpo_pairs(pairs, tokenizer, DPOConfig(output_dir="/tmp/x", max_length=40, max_prompt_length=16))
    assert (report.kept, report.prompt_truncated, report.reply_truncated, report.dropped) == (2, 1, 1, 0)
    assert len(rows[0]["prompt_ids"]) == 16 and len(rows[0]["prompt_ids"]) + len(rows[0]["chosen_ids"]) == 40
    full_prompt = encode_prompt(tokenizer, long_prompt)
    assert rows[0]["prompt_ids"] == full_prompt[-16:]  # the front went, the end that precedes the reply stayed
    assert rows[1]["chosen_ids"][-1] == tokenizer.eos_token_id  # replies end with EOS, so the policy learns to stop
    assert rows[1]["prompt_ids"] == encode_prompt(tokenizer, short)  # the prompt is exactly what is sampled from

    rows, report = encode_dpo_pairs(pairs, tokenizer, DPOConfig(output_dir="/tmp/x", max_length=40,
                                                                max_prompt_length=16, truncation="drop"))
    assert (report.kept, report.dropped, report.prompt_truncated) == (1, 1, 0) and report.longest > 40


def test_stop_then_resume_finishes_with_the_same_steps(tiny_models, tmp_path):
    """Stopped after step 3 and resumed, a run ends at the planned step with the straight run's losses."""
    data = polite_preferences(60, seed=3)
    common = dict(max_steps=8, save_steps=4, eval_fraction=0.0)
    straight_losses: dict[int, float] = {}
    straight = train_dpo(
        config(tmp_path / "a", **common), dataset=data, policy_path=tiny_models.causal_lm,
        on_step=lambda s, t, m: straight_losses.__setitem__(s, m["loss"]) if "loss" in m else None,
    )
    cfg = config(tmp_path / "b", **common)
    polls = []
    stopped = train_dpo(cfg, dataset=data, policy_path=tiny_models.causal_lm,
                        should_stop=lambda: polls.append(1) or len(polls) >= 3)
    assert stopped.status == "stopped" and stopped.global_step == 3 and stopped.artifact_dir is None
    assert stopped.checkpoint_dir.name == "checkpoint-3"
    with pytest.raises(ValueError, match=re.escape("already holds checkpoints of an earlier run")):
        train_dpo(cfg, dataset=data, policy_path=tiny_models.causal_lm)
    with pytest.raises(ValueError, match=re.escape("Cannot resume: the dataset differs")):
        train_dpo(cfg, dataset=data[:-1], policy_path=tiny_models.causal_lm, resume_from_checkpoint=True)

    resumed_losses: dict[int, float] = {}
    resumed = train_dpo(
        cfg, dataset=data, policy_path=tiny_models.causal_lm, resume_from_checkpoint=True,
        on_step=lambda s, t, m: resumed_losses.__setitem__(s, m["loss"]) if "loss" in m else None,
    )
    assert resumed.status == "completed"
    assert (resumed.global_step, resumed.total_steps) == (8, 8) == (straight.global_step, straight.total_steps)
    assert sorted(resumed_losses) == [4, 5, 6, 7, 8]
    for step, loss in resumed_losses.items():
        assert loss == pytest.approx(straight_losses[step], rel=1e-4, abs=1e-6), step


def test_a_reference_outside_the_roots_is_refused(tiny_models, tmp_path):
    """With model roots, the policy and the reference must both lie under them."""
    from training.model_paths import ModelPathError

    with pytest.raises(ModelPathError, match="is outside the model roots"):
        train_dpo(config(tmp_path), dataset=polite_preferences(10), policy_path=tiny_models.causal_lm,
                  reference_path=tiny_models.causal_lm, model_roots=[tmp_path])


def test_dpo_runs_plug_into_the_training_run_registry():
    """The "dpo" kind of training run takes this config and trains with the run's base model as policy."""
    from training.dpo import train_dpo_run
    from training.runner import config_fields, get_trainer

    spec = get_trainer("dpo")
    assert spec.load_train() is train_dpo_run
    assert spec.build_config({"output_dir": "/tmp/x", "beta": 0.2}) == DPOConfig(output_dir="/tmp/x", beta=0.2)
    with pytest.raises(ConfigError, match=re.escape("`beta` must be > 0")):
        spec.build_config({"output_dir": "/tmp/x", "beta": -1})
    fields = {f.name: f for f in config_fields(spec)}
    assert fields["loss_type"].choices == ("sigmoid", "ipo", "hinge", "sigmoid_norm")
    assert fields["max_prompt_length"].help.startswith("Most tokens of the prompt")


@pytest.mark.django_db
def test_a_dpo_run_trains_on_a_snapshot(training_settings, make_campaign, annotator, researcher, manager, tiny_models):
    """DPO is a run kind beside PPO: the policy learns from the snapshot's preference rows."""
    dataset = make_ready_dataset(make_campaign, annotator, researcher, manager)
    run = training_run_create(
        kind="dpo",
        dataset=dataset,
        base_model_path=str(tiny_models.causal_lm),
        config={"learning_rate": 1e-3, "max_steps": 2, "per_device_train_batch_size": 4, "eval_fraction": 0.25,
                "max_length": 128, "max_prompt_length": 64},
        created_by=manager,
    )
    assert run_training.apply(args=[run.pk], task_id=run.celery_task_id).get() == "succeeded"
    run.refresh_from_db()
    assert run.step == 2, run.error
    assert (Path(run.artifacts["model"]) / "arbiter_dpo.json").is_file()
