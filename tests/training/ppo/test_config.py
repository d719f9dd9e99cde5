"""PPOConfig: defaults, and bad values refused with messages that name the field and the fix."""

import math
import re
import subprocess
import sys

import pytest

from training.config import ConfigError
from training.ppo.config import PPOConfig

pytestmark = pytest.mark.training


def test_config_defaults_are_valid_and_round_trip():
    """The defaults validate, follow the usual PPO values, and to_dict / from_dict round-trip."""
    config = PPOConfig(output_dir="/tmp/ppo")
    assert (config.gamma, config.lam, config.cliprange, config.vf_coef) == (1.0, 0.95, 0.2, 0.1)
    assert config.total_steps == math.ceil(10_000 / 64)
    assert PPOConfig.from_dict(config.to_dict()) == config
    assert PPOConfig(output_dir="/tmp/ppo", num_steps=7).total_steps == 7


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"learning_rate": 0}, "learning_rate", "`learning_rate` must be > 0 and < 1, got 0."),
        ({"batch_size": 8.0}, "batch_size", "`batch_size` must be an integer, got 8.0."),
        (
            {"batch_size": 10, "mini_batch_size": 4},
            "mini_batch_size",
            "`batch_size` (10) must be a multiple of `mini_batch_size` (4).",
        ),
        (
            {"mini_batch_size": 16, "gradient_accumulation_steps": 3},
            "gradient_accumulation_steps",
            "`mini_batch_size` (16) must be a multiple of `gradient_accumulation_steps` (3).",
        ),
        ({"temperature": 0}, "temperature", "`temperature` must be > 0 and <= 10, got 0."),
        (
            {"kl_estimator": "k2"},
            "kl_estimator",
            "`kl_estimator` must be one of 'k1', 'k3', got 'k2'.",
        ),
        (
            {"kl_target": 6.0, "kl_coef": 0.0},
            "kl_coef",
            "`kl_coef` must be > 0 when `kl_target` is set",
        ),
        ({"kl_target": -1.0}, "kl_target", "`kl_target` must be > 0, got -1.0."),
        ({"lam": 1.5}, "lam", "`lam` must be >= 0 and <= 1, got 1.5."),
        ({"gamma": 0}, "gamma", "`gamma` must be > 0 and <= 1, got 0."),
        (
            {"missing_eos_penalty": -1.0},
            "missing_eos_penalty",
            "`missing_eos_penalty` must be >= 0 (it is subtracted from the score), got -1.0.",
        ),
        (
            {"reward_normalization": "global"},
            "reward_normalization",
            "`reward_normalization` must be one of 'none', 'batch', 'running', got 'global'.",
        ),
        ({"reward_clip": 0}, "reward_clip", "`reward_clip` must be > 0, got 0."),
        ({"lr_decay": "cosine"}, "lr_decay", "`lr_decay` must be one of 'linear', 'constant'"),
        ({"num_steps": 0}, "num_steps", "`num_steps` must be >= 1, got 0."),
        ({"whiten_rewards": "yes"}, "whiten_rewards", "`whiten_rewards` must be true or false"),
        ({"output_dir": " "}, "output_dir", "`output_dir` must be a non-empty folder path string."),
    ],
)
def test_bad_config_values_are_refused_naming_the_field(overrides, field, message):
    """Each bad value raises ConfigError with the field and a message saying what is allowed."""
    values = {"output_dir": "/tmp/ppo", **overrides}
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        PPOConfig(**values)
    assert caught.value.field == field


def test_the_config_imports_without_torch_or_transformers():
    """The web process validates PPO configs without loading torch or transformers."""
    code = (
        "import sys; from training.ppo.config import PPOConfig; PPOConfig(output_dir='/tmp/ppo'); "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_from_dict_refuses_unknown_keys_with_a_hint():
    """A misspelled key is named together with the closest real one."""
    with pytest.raises(
        ConfigError, match=re.escape("Unknown config key `kl_coeff`. Did you mean `kl_coef`?")
    ):
        PPOConfig.from_dict({"output_dir": "/tmp/ppo", "kl_coeff": 0.1})
    with pytest.raises(ConfigError, match=re.escape("`output_dir` is required")):
        PPOConfig.from_dict({"kl_coef": 0.1})
