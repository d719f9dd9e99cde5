"""train_reward_model: real training on tiny models, resume, length policy, data errors."""

import json
import math
import re

import pytest

pytestmark = pytest.mark.training
pytest.importorskip("trl")

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from training.config import RewardModelConfig  # noqa: E402
from training.reward import DatasetError, encode_pairs, train_reward_model  # noqa: E402
from training.tiny import polite_preferences  # noqa: E402


def config(tmp_path, **overrides):
    values = dict(
        output_dir=str(tmp_path / "run"),
        learning_rate=3e-3,
        max_steps=6,
        per_device_train_batch_size=8,
        eval_fraction=0.2,
        eval_steps=None,
        logging_steps=1,
        save_steps=100,
        max_length=64,
        seed=0,
    )
    values.update(overrides)
    return RewardModelConfig(**values)


def test_a_few_steps_change_the_parameters_with_a_finite_loss(tiny_models, tmp_path):
    """Six steps run, every logged loss is finite, the weights move and artifacts are saved."""
    before = load_file(tiny_models.reward_base / "model.safetensors")
    seen = []
    result = train_reward_model(
        config(tmp_path, use_margin=True, center_rewards_coefficient=0.01),
        dataset=polite_preferences(60, seed=2, margin=True),
        base_model_path=tiny_models.reward_base,
        dataset_hash="sha256:abc123",
        on_step=lambda step, total, metrics: seen.append((step, total, metrics)),
    )
    assert result.status == "completed"
    assert (result.global_step, result.total_steps) == (6, 6)
    train_calls = [s for s in seen if "loss" in s[2]]
    assert [s[0] for s in train_calls] == [1, 2, 3, 4, 5, 6]
    assert all(total == 6 for _, total, _ in seen)
    assert all(math.isfinite(m["loss"]) for _, _, m in train_calls)
    assert {"loss", "accuracy", "margin", "learning_rate", "epoch"} <= set(train_calls[0][2])
    assert math.isfinite(result.metrics["eval_loss"])
    assert 0.0 <= result.metrics["eval_accuracy"] <= 1.0 and "eval_margin" in result.metrics
    assert result.counts == {
        "pairs": 60,
        "train_pairs": 48,
        "eval_pairs": 12,
        "truncated": 0,
        "dropped": 0,
    }
    assert result.samples_per_second > 0

    after = load_file(result.artifact_dir / "model.safetensors")
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert "score.weight" in changed and len(changed) > len(before) // 2
    card = (result.artifact_dir / "README.md").read_text()
    assert "dataset hash: `sha256:abc123`" in card
    assert "-logsigmoid(r_chosen - r_rejected - margin) + 0.01 * mean(r^2)" in card
    assert '"use_margin": true' in card and "| eval_accuracy |" in card
    summary = json.loads((result.artifact_dir / "arbiter_reward.json").read_text())
    assert summary["dataset_hash"] == "sha256:abc123" and summary["counts"] == result.counts


def test_it_learns_a_known_preference(polite_run):
    """On polite-vs-blunt replies the held-out accuracy reaches at least 95%."""
    result, steps, cfg = polite_run
    assert result.status == "completed"
    assert result.counts["eval_pairs"] == 120
    assert result.metrics["eval_accuracy"] >= 0.95
    assert result.metrics["eval_margin"] > 1.0
    assert [e["step"] for e in result.eval_history] == [20, 40]
    assert steps[-1][0] == 40 and "eval_accuracy" in steps[-1][2]
    first, last = result.log_history[0]["loss"], result.log_history[-1]["loss"]
    assert last < first


def test_stop_then_resume_finishes_with_the_same_steps_and_data_order(tiny_models, tmp_path):
    """Stopped after step 5 and resumed, a run ends at the same step with the same losses and weights."""
    data = polite_preferences(80, seed=3)
    common = dict(max_steps=12, save_steps=4, num_train_epochs=1, per_device_train_batch_size=8)

    straight_losses = {}
    straight = train_reward_model(
        config(tmp_path / "a", **common),
        dataset=data,
        base_model_path=tiny_models.reward_base,
        on_step=lambda s, t, m: straight_losses.__setitem__(s, m["loss"]) if "loss" in m else None,
    )

    cfg = config(tmp_path / "b", **common)
    polls = []
    stopped = train_reward_model(
        cfg,
        dataset=data,
        base_model_path=tiny_models.reward_base,
        should_stop=lambda: polls.append(1) or len(polls) >= 5,  # polled once per step
    )
    assert stopped.status == "stopped" and stopped.global_step == 5 and stopped.artifact_dir is None
    assert stopped.checkpoint_dir.name == "checkpoint-5"

    with pytest.raises(
        ValueError,
        match=re.escape(
            "already holds checkpoints of an earlier run. Pass resume_from_checkpoint=True"
        ),
    ):
        train_reward_model(cfg, dataset=data, base_model_path=tiny_models.reward_base)
    with pytest.raises(ValueError, match=re.escape("Cannot resume: the dataset differs")):
        train_reward_model(
            cfg,
            dataset=data[:-1],
            base_model_path=tiny_models.reward_base,
            resume_from_checkpoint=True,
        )

    resumed_losses = {}
    resumed = train_reward_model(
        cfg,
        dataset=data,
        base_model_path=tiny_models.reward_base,
        resume_from_checkpoint=True,
        on_step=lambda s, t, m: resumed_losses.__setitem__(s, m["loss"]) if "loss" in m else None,
    )
    assert resumed.status == "completed"
    assert (
        (resumed.global_step, resumed.total_steps)
        == (12, 12)
        == (straight.global_step, straight.total_steps)
    )
    assert sorted(resumed_losses) == list(range(6, 13))
    for step, loss in resumed_losses.items():
        assert loss == pytest.approx(straight_losses[step], rel=1e-4, abs=1e-6), step
    a = load_file(straight.artifact_dir / "model.safetensors")
    b = load_file(resumed.artifact_dir / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def _long_pairs():
    """Pairs whose shared history is long; the replies differ only at the end."""
    history = " ".join(["the robot moves the heavy table"] * 12)
    rows = polite_preferences(10, seed=4)
    for row in rows[:4]:
        row["prompt"] = [
            {"role": "user", "content": history},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "and then?"},
        ]
    return rows


def test_length_policy_truncates_from_the_front_and_reports(tiny_models, tmp_path):
    """truncate_left keeps the end (the differing replies) and counts each truncated pair."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models.reward_base, local_files_only=True)
    from training.reward import _check_pairs

    pairs = _check_pairs(_long_pairs(), use_margin=False)
    rows, report = encode_pairs(pairs, tokenizer, config(tmp_path, max_length=40))
    assert (report.pairs, report.kept, report.truncated, report.dropped) == (10, 10, 4, 0)
    assert report.longest > 40
    for row in rows[:4]:
        assert len(row["chosen_ids"]) <= 40 and len(row["rejected_ids"]) <= 40
        assert row["chosen_ids"] != row["rejected_ids"]
        assert row["chosen_ids"][-1] == tokenizer.eos_token_id  # the end survives
    end = tokenizer.decode(rows[0]["chosen_ids"])
    assert end.endswith(pairs[0].chosen[0]["content"] + "<eos>")

    rows, report = encode_pairs(
        pairs, tokenizer, config(tmp_path, max_length=40, truncation="drop")
    )
    assert (report.kept, report.truncated, report.dropped) == (6, 0, 4)


def test_length_policy_counts_reach_the_result_and_card(tiny_models, tmp_path):
    """A run with the drop policy reports the dropped pairs in its result and model card."""
    result = train_reward_model(
        config(tmp_path, max_length=40, truncation="drop", max_steps=1, eval_fraction=0.0),
        dataset=_long_pairs(),
        base_model_path=tiny_models.reward_base,
    )
    assert result.counts["dropped"] == 4 and result.counts["train_pairs"] == 6
    assert result.length["train"].dropped == 4
    assert "Train: 0 truncated, 4 dropped of 10" in (result.artifact_dir / "README.md").read_text()


def test_all_pairs_dropped_is_an_error(tiny_models, tmp_path):
    """When the drop policy leaves nothing to train on, the error says how to fix it."""
    with pytest.raises(
        DatasetError, match=re.escape("Raise `max_length` or use truncation='truncate_left'")
    ):
        train_reward_model(
            config(tmp_path, max_length=8, truncation="drop"),
            dataset=polite_preferences(10),
            base_model_path=tiny_models.reward_base,
        )


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [{"prompt": [], "chosen": "yes", "rejected": []}] * 2,
            "row 0: chosen: must be a non-empty list of messages",
        ),
        (
            [
                {
                    "prompt": [{"role": "bot", "content": "x"}],
                    "chosen": [{"role": "assistant", "content": "a"}],
                    "rejected": [{"role": "assistant", "content": "b"}],
                }
            ]
            * 2,
            "row 0: prompt[0]: role must be one of system, user, assistant, got 'bot'",
        ),
        ([{"chosen": [{"role": "assistant", "content": "a"}]}] * 2, "row 0: rejected: missing"),
        (["text"] * 2, "row 0: must be a dict with prompt/chosen/rejected, got str"),
        ([], "dataset has 0 row(s); a reward model needs at least 2 pairs"),
    ],
)
def test_bad_rows_are_refused_naming_row_and_field(tiny_models, tmp_path, rows, message):
    """Malformed rows fail before any training, naming the row and the field."""
    with pytest.raises(DatasetError, match=re.escape(message)):
        train_reward_model(config(tmp_path), dataset=rows, base_model_path=tiny_models.reward_base)


def test_margin_is_required_when_used(tiny_models, tmp_path):
    """use_margin without a margin on every row is refused."""
    with pytest.raises(
        DatasetError,
        match=re.escape(
            "row 0: margin: use_margin is on, so every row needs a finite numeric margin (got None)"
        ),
    ):
        train_reward_model(
            config(tmp_path, use_margin=True),
            dataset=polite_preferences(4),
            base_model_path=tiny_models.reward_base,
        )


def test_base_model_outside_roots_is_refused(tiny_models, tmp_path):
    """With model roots given, a base model outside them is refused before loading."""
    from training.model_paths import ModelPathError

    with pytest.raises(ModelPathError, match="outside the model roots"):
        train_reward_model(
            config(tmp_path),
            dataset=polite_preferences(4),
            base_model_path=tiny_models.reward_base,
            model_roots=[tmp_path],
        )
