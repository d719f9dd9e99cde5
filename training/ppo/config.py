"""A PPO run's settings and its result. No torch, no Django: the web process validates with it.

`PPOConfig` is what a TrainingRun of kind `ppo` stores and what `train_ppo` takes; it is
validated when created and every `ConfigError` names the field and the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from training.config import ConfigError, RunConfig, choices, require_bool

KL_ESTIMATORS = ("k1", "k3")
REWARD_NORMALIZATIONS = ("none", "batch", "running")
LR_DECAYS = ("linear", "constant")


@dataclass
class PPOConfig(RunConfig):
    """Settings of one PPO run. Defaults are the usual values for RLHF on a pretrained model."""

    output_dir: str
    """Folder of the run: `checkpoints/` (for resuming) and `model/` (the final policy)."""

    reward_model_path: str = ""
    """Reward-model folder scored against, for runs started in Arbiter (`train_ppo_run` passes it
    on; a direct `train_ppo` call names it as an argument instead). The value model starts from it."""

    reference_path: str | None = None
    """Frozen reference policy for the KL penalty; empty: the policy as the run starts."""

    learning_rate: float = 3e-6
    """Peak Adam learning rate of the policy and the value model; 1e-6 to 1e-5 suits
    pretrained models, 1e-3 tiny ones."""

    total_episodes: int = 10_000
    """Rollouts (prompt + sampled response) to collect in all: the run takes
    ceil(total_episodes / batch_size) steps. Ignored when `num_steps` is set."""

    num_steps: int | None = None
    """PPO steps (rollout, score, update) to run; when set it overrides `total_episodes`."""

    batch_size: int = 64
    """Rollouts collected per step."""

    mini_batch_size: int = 16
    """Rollouts per optimizer step; `batch_size` must be a multiple of it."""

    gradient_accumulation_steps: int = 1
    """Micro-batches each minibatch is split into before its optimizer step (to save memory);
    `mini_batch_size` must be a multiple of it."""

    num_ppo_epochs: int = 4
    """Passes over each step's rollouts, each in a new shuffled minibatch order."""

    max_prompt_length: int = 512
    """Most prompt tokens; longer prompts are cut from the front (the end is what is answered)."""

    response_length: int = 53
    """Tokens sampled per response; a response that has not ended with EOS by then counts as
    truncated and gets `missing_eos_penalty`."""

    temperature: float = 0.7
    """Sampling temperature; the log-probabilities are computed at the same temperature
    (a mismatch makes the KL estimate negative)."""

    missing_eos_penalty: float | None = 1.0
    """Subtracted from the score (in the reward model's units) of a response that does not end
    with EOS within `response_length` tokens; None turns it off."""

    kl_coef: float = 0.05
    """Beta: weight of the per-token KL penalty against the reference policy (the starting
    value when `kl_target` is set)."""

    kl_estimator: str = "k1"
    """Per-token KL estimator: `"k1"` (log p - log p_ref, unbiased) or `"k3"`
    ((r - 1) - log r with r = p_ref / p: never negative, lower variance)."""

    kl_target: float | None = None
    """Adaptive KL (Ziegler et al., 2019): adjust beta so that `objective/kl` tracks this
    value; None keeps beta fixed at `kl_coef`."""

    kl_horizon: int = 10_000
    """Horizon (in rollouts) of the adaptive KL controller: larger adapts beta more slowly."""

    cliprange: float = 0.2
    """Clip range of the policy ratio in the PPO objective."""

    cliprange_value: float = 0.2
    """Clip range of the value prediction around its rollout value."""

    vf_coef: float = 0.1
    """Weight of the value loss in the total loss."""

    gamma: float = 1.0
    """Discount factor of GAE (1.0: the score at the end counts fully for every token)."""

    lam: float = 0.95
    """Lambda of GAE: bias (0) versus variance (1) of the advantage estimate."""

    whiten_rewards: bool = False
    """Whiten the per-token rewards (scale only, over the real tokens) before GAE."""

    reward_normalization: str = "none"
    """Normalize the scores before use: `"none"`, `"batch"` (mean 0, std 1 within each step)
    or `"running"` (by the running mean and std of every score seen so far)."""

    reward_clip: float | None = None
    """Clip the (normalized) scores to [-reward_clip, reward_clip]; None does not clip."""

    max_grad_norm: float = 1.0
    """Gradient-norm clipping threshold, over the policy and value parameters together."""

    lr_decay: str = "linear"
    """Learning-rate schedule over the steps: `"linear"` (to 0 at the end) or `"constant"`."""

    adam_eps: float = 1e-5
    """Epsilon of the Adam optimizers."""

    seed: int = 42
    """Seed of the prompt order, the sampling and the minibatch shuffles."""

    save_steps: int = 50
    """Save a resumable checkpoint every this many steps (and when stopped)."""

    save_total_limit: int | None = 2
    """Keep at most this many checkpoints; None keeps them all."""

    sample_steps: int | None = 10
    """Pass a table of sample responses to `on_step` at step 1 and every this many steps;
    None turns the table off."""

    sample_rows: int = 8
    """Rows (prompt, response, score) in each sample table."""

    kl_warning_threshold: float = 10.0
    """Warn when `objective/kl` (nats per response) exceeds this value."""

    INT_FIELDS: ClassVar[tuple[str, ...]] = (
        "total_episodes",
        "batch_size",
        "mini_batch_size",
        "gradient_accumulation_steps",
        "num_ppo_epochs",
        "max_prompt_length",
        "response_length",
        "kl_horizon",
        "save_steps",
        "sample_rows",
        "seed",
    )
    OPTIONAL_INT_FIELDS: ClassVar[tuple[str, ...]] = ("num_steps", "save_total_limit", "sample_steps")
    NUMBER_FIELDS: ClassVar[tuple[str, ...]] = (
        "learning_rate",
        "temperature",
        "kl_coef",
        "cliprange",
        "cliprange_value",
        "vf_coef",
        "gamma",
        "lam",
        "max_grad_norm",
        "adam_eps",
        "kl_warning_threshold",
    )
    OPTIONAL_NUMBER_FIELDS: ClassVar[tuple[str, ...]] = (
        "missing_eos_penalty",
        "kl_target",
        "reward_clip",
    )
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "kl_estimator": KL_ESTIMATORS,
        "reward_normalization": REWARD_NORMALIZATIONS,
        "lr_decay": LR_DECAYS,
    }

    def __post_init__(self) -> None:
        self.check_types()
        if not isinstance(self.reward_model_path, str):
            raise ConfigError(
                "reward_model_path", "`reward_model_path` must be a folder path string."
            )
        if self.reference_path is not None and not isinstance(self.reference_path, str):
            raise ConfigError(
                "reference_path", "`reference_path` must be a folder path string or empty."
            )
        require_bool("whiten_rewards", self.whiten_rewards)

        if not 0 < self.learning_rate < 1:
            raise ConfigError(
                "learning_rate",
                f"`learning_rate` must be > 0 and < 1, got {self.learning_rate}. Use a small positive "
                "value such as 3e-6 (pretrained models) to 1e-3 (tiny models).",
            )
        # Every count is at least 1; the seed may be 0.
        self.check_at_least_one(tuple(name for name in self.INT_FIELDS if name != "seed"))
        if self.num_steps is not None and self.num_steps < 1:
            raise ConfigError(
                "num_steps",
                f"`num_steps` must be >= 1, got {self.num_steps}. Leave it unset (null) to run for "
                "`total_episodes` instead.",
            )
        if self.batch_size % self.mini_batch_size:
            raise ConfigError(
                "mini_batch_size",
                f"`batch_size` ({self.batch_size}) must be a multiple of `mini_batch_size` "
                f"({self.mini_batch_size}). Use a mini_batch_size that divides the batch size.",
            )
        if self.mini_batch_size % self.gradient_accumulation_steps:
            raise ConfigError(
                "gradient_accumulation_steps",
                f"`mini_batch_size` ({self.mini_batch_size}) must be a multiple of "
                f"`gradient_accumulation_steps` ({self.gradient_accumulation_steps}). Use a number of "
                "accumulation steps that divides the minibatch size.",
            )
        if not 0 < self.temperature <= 10:
            raise ConfigError(
                "temperature",
                f"`temperature` must be > 0 and <= 10, got {self.temperature}. PPO needs sampling; "
                "0.7 is the usual value.",
            )
        if self.missing_eos_penalty is not None and self.missing_eos_penalty < 0:
            raise ConfigError(
                "missing_eos_penalty",
                f"`missing_eos_penalty` must be >= 0 (it is subtracted from the score), got "
                f"{self.missing_eos_penalty}. Use 1.0, or null for no penalty.",
            )
        if self.kl_coef < 0:
            raise ConfigError(
                "kl_coef", f"`kl_coef` must be >= 0, got {self.kl_coef}. 0.05 is the usual value."
            )
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ConfigError(
                "kl_estimator",
                f"`kl_estimator` must be one of {choices(KL_ESTIMATORS)}, got {self.kl_estimator!r}.",
            )
        if self.kl_target is not None and not self.kl_target > 0:
            raise ConfigError(
                "kl_target",
                f"`kl_target` must be > 0, got {self.kl_target}. Use null for a fixed `kl_coef`.",
            )
        if self.kl_target is not None and self.kl_coef == 0:
            raise ConfigError(
                "kl_coef",
                "`kl_coef` must be > 0 when `kl_target` is set: the adaptive controller scales it and "
                "cannot move it away from 0.",
            )
        for name in ("cliprange", "cliprange_value", "vf_coef", "max_grad_norm", "adam_eps"):
            if not getattr(self, name) > 0:
                raise ConfigError(name, f"`{name}` must be > 0, got {getattr(self, name)}.")
        if not 0 < self.gamma <= 1:
            raise ConfigError("gamma", f"`gamma` must be > 0 and <= 1, got {self.gamma}.")
        if not 0 <= self.lam <= 1:
            raise ConfigError("lam", f"`lam` must be >= 0 and <= 1, got {self.lam}.")
        if self.reward_normalization not in REWARD_NORMALIZATIONS:
            raise ConfigError(
                "reward_normalization",
                f"`reward_normalization` must be one of {choices(REWARD_NORMALIZATIONS)}, got "
                f"{self.reward_normalization!r}.",
            )
        if self.reward_clip is not None and not self.reward_clip > 0:
            raise ConfigError(
                "reward_clip",
                f"`reward_clip` must be > 0, got {self.reward_clip}. Use null for no clipping.",
            )
        if self.lr_decay not in LR_DECAYS:
            raise ConfigError(
                "lr_decay",
                f"`lr_decay` must be one of {choices(LR_DECAYS)}, got {self.lr_decay!r}.",
            )
        if self.seed < 0:
            raise ConfigError("seed", f"`seed` must be >= 0, got {self.seed}.")
        self.check_save_total_limit()
        if self.sample_steps is not None and self.sample_steps < 1:
            raise ConfigError(
                "sample_steps",
                f"`sample_steps` must be >= 1, got {self.sample_steps}. Use null for no sample tables.",
            )
        if not self.kl_warning_threshold > 0:
            raise ConfigError(
                "kl_warning_threshold",
                f"`kl_warning_threshold` must be > 0, got {self.kl_warning_threshold}.",
            )

    @property
    def total_steps(self) -> int:
        """Return the number of PPO steps the run takes."""
        if self.num_steps is not None:
            return self.num_steps
        return math.ceil(self.total_episodes / self.batch_size)


@dataclass
class PPOResult:
    """The outcome of `train_ppo`."""

    status: str  # "completed" or "stopped" (should_stop returned True; resumable)
    global_step: int
    total_steps: int
    metrics: dict[str, float]  # the last step's
    log_history: list[dict[str, float]]  # one entry per step, with its "step"
    warnings: list[str]  # every warning of the run, each starting "step N: "
    samples: list[dict[str, Any]]  # the last sample table
    artifact_dir: Path | None
    checkpoint_dir: Path | None
    train_runtime: float
    tokenizer_changes: list[str] = field(default_factory=list)


__all__ = ["KL_ESTIMATORS", "LR_DECAYS", "PPOConfig", "PPOResult", "REWARD_NORMALIZATIONS"]
