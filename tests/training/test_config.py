"""RewardModelConfig refuses bad values with messages that name the field and the fix."""

import re

import pytest

from training.config import ConfigError, RewardModelConfig

pytestmark = pytest.mark.training


def make(**overrides):
    return RewardModelConfig(output_dir="/tmp/run", **overrides)


def test_defaults_are_valid_and_round_trip():
    """The defaults validate, and to_dict / from_dict round-trip."""
    config = make()
    assert config.truncation == "truncate_left"
    assert config.gradient_checkpointing is False
    assert RewardModelConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        (
            {"learning_rate": 0},
            "learning_rate",
            "`learning_rate` must be > 0 and < 1, got 0. Use a small positive value such as 1e-5",
        ),
        (
            {"learning_rate": "1e-5"},
            "learning_rate",
            "`learning_rate` must be a finite number, got '1e-5'.",
        ),
        (
            {"learning_rate": float("nan")},
            "learning_rate",
            "`learning_rate` must be a finite number, got nan.",
        ),
        (
            {"num_train_epochs": 0},
            "num_train_epochs",
            "`num_train_epochs` must be > 0, got 0. Set it to 1 or more, or set `max_steps`.",
        ),
        (
            {"max_steps": 0},
            "max_steps",
            "`max_steps` must be >= 1, got 0. Leave it unset (null) to train for `num_train_epochs` instead.",
        ),
        (
            {"per_device_train_batch_size": 0},
            "per_device_train_batch_size",
            "`per_device_train_batch_size` must be >= 1, got 0.",
        ),
        (
            {"per_device_train_batch_size": 8.0},
            "per_device_train_batch_size",
            "`per_device_train_batch_size` must be an integer, got 8.0.",
        ),
        (
            {"gradient_accumulation_steps": True},
            "gradient_accumulation_steps",
            "`gradient_accumulation_steps` must be an integer, got True.",
        ),
        ({"max_length": 4}, "max_length", "`max_length` must be >= 8 tokens, got 4."),
        (
            {"truncation": "truncate_right"},
            "truncation",
            "`truncation` must be one of 'truncate_left', 'drop', got 'truncate_right'. Use 'truncate_left' "
            "to cut long conversations from the front, or 'drop' to leave long pairs out.",
        ),
        (
            {"eval_fraction": 1.0},
            "eval_fraction",
            "`eval_fraction` must be >= 0 and < 1, got 1.0. Use 0.1 to hold out 10% of the pairs, or 0 "
            "for no held-out evaluation.",
        ),
        ({"seed": -1}, "seed", "`seed` must be >= 0, got -1."),
        (
            {"center_rewards_coefficient": -0.01},
            "center_rewards_coefficient",
            "`center_rewards_coefficient` must be >= 0, got -0.01. Use 0.01, or null to turn centering off.",
        ),
        ({"use_margin": "yes"}, "use_margin", "`use_margin` must be true or false, got 'yes'."),
        (
            {"mixed_precision": "fp8"},
            "mixed_precision",
            "`mixed_precision` must be one of 'auto', 'no', 'bf16', 'fp16', got 'fp8'.",
        ),
        (
            {"eval_steps": 0},
            "eval_steps",
            "`eval_steps` must be >= 1, got 0. Use null to evaluate only at the end.",
        ),
        (
            {"lr_scheduler_type": "exp"},
            "lr_scheduler_type",
            "`lr_scheduler_type` must be one of 'linear', 'cosine', 'constant', 'constant_with_warmup', got 'exp'.",
        ),
    ],
)
def test_bad_values_name_the_field_and_the_fix(overrides, field, message):
    """Each invalid value raises ConfigError with the field and the exact message."""
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        make(**overrides)
    assert info.value.field == field


def test_max_steps_overrides_a_zero_epoch_count():
    """With max_steps set, num_train_epochs is not checked (max_steps wins)."""
    assert make(max_steps=10, num_train_epochs=0).max_steps == 10


def test_output_dir_is_required():
    """from_dict without output_dir says it is required."""
    with pytest.raises(ConfigError, match=re.escape("`output_dir` is required")):
        RewardModelConfig.from_dict({"learning_rate": 1e-5})
    with pytest.raises(
        ConfigError, match=re.escape("`output_dir` must be a non-empty folder path string.")
    ):
        RewardModelConfig(output_dir="  ")


def test_from_dict_rejects_unknown_keys_with_a_suggestion():
    """An unknown key is refused, naming it, the closest known key and the known keys."""
    with pytest.raises(
        ConfigError,
        match=re.escape("Unknown config key `learning_rat`. Did you mean `learning_rate`?"),
    ) as info:
        RewardModelConfig.from_dict({"output_dir": "/tmp/x", "learning_rat": 1e-5})
    assert info.value.field == "learning_rat"
    assert "Known keys: output_dir, learning_rate," in str(info.value)
    with pytest.raises(ConfigError, match=re.escape("Unknown config key `bf16`.")):
        RewardModelConfig.from_dict({"output_dir": "/tmp/x", "bf16": True})


def test_from_dict_rejects_a_non_object():
    """A config that is not a dict is refused."""
    with pytest.raises(ConfigError, match=re.escape("The config must be a JSON object, got list.")):
        RewardModelConfig.from_dict([1, 2])


def test_the_fields_reward_and_dpo_share_are_declared_once():
    """Both kinds take their shared fields from TrainerRunConfig; a kind that redeclares one only
    for its own default keeps the shared docstring that forms show."""
    import dataclasses

    from training.config import TrainerRunConfig
    from training.dpo import DPOConfig
    from training.runner import field_docs

    shared = [f.name for f in dataclasses.fields(TrainerRunConfig)]
    for cls in (RewardModelConfig, DPOConfig):
        assert [f.name for f in dataclasses.fields(cls)][: len(shared)] == shared
    docs = field_docs(DPOConfig)
    assert DPOConfig(output_dir="/tmp/x").per_device_train_batch_size == 4
    assert docs["per_device_train_batch_size"] == field_docs(TrainerRunConfig)["per_device_train_batch_size"]
    assert docs["learning_rate"].startswith("Peak AdamW learning rate; 5e-7 to 5e-6")
