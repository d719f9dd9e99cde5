"""Arbiter's PPO trainer for language models, on torch + transformers. No Django here.

TRL no longer ships a PPO trainer; this one follows its last one and "The N+ Implementation
Details of RLHF with PPO" (Huang et al., 2024). `train_ppo` loads four models from local
folders (the policy, a frozen reference copy, the reward model, and a value model initialized
from the reward model, dropout off in all of them) and then repeats, step after step:

1. rollout: sample `batch_size` responses at `temperature` from left-padded prompts, cut each
   after its first EOS, and recompute the log-probs (policy and reference, at the same
   temperature) and the per-token values;
2. score: the reward-model score (or `reward_fn`) at the last real token, minus the
   missing-EOS penalty, normalized and clipped, plus the per-token KL penalty `-beta * kl`;
3. advantages: GAE (gamma, lambda), whitened over the real tokens;
4. update: `num_ppo_epochs` passes over shuffled minibatches with the clipped policy and value
   losses, gradient accumulation, grad-norm clipping and a linearly decaying learning rate;
5. log: metrics under TRL's names, warnings, a table of sample responses, `on_step`;
6. checkpoint: every `save_steps` and when `should_stop()` says so, with everything needed to
   resume on exactly the same trajectory.

At the end the policy is saved to `output_dir/model/` with its tokenizer, a summary and a card.

Prompts are rendered for the policy as `training.generation` renders them (so the trained
policy is later sampled on the text it was trained on), and (prompt, reply) pairs are scored
as `training.scoring` scores them. torch and transformers are imported inside the functions
that use them: the web process imports `PPOConfig` to validate a run's config without them.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from training.config import ConfigError, RunConfig, choices, require_bool
from training.formatting import DEFAULT_CHAT_TEMPLATE, FormatError, check_messages, truncate_left
from training.generation import PromptInput, encode_prompt, eos_token_ids
from training.trainer_utils import (
    CHECKPOINTS,
    MODEL,
    card_metric_table,
    card_provenance,
    fingerprint,
    prepare_output_dir,
    resolve_model_dir,
    versions,
)

if TYPE_CHECKING:
    import torch
    from torch import nn
    from transformers import GenerationConfig

    from training.scoring import RewardScorer

KL_ESTIMATORS = ("k1", "k3")
REWARD_NORMALIZATIONS = ("none", "batch", "running")
LR_DECAYS = ("linear", "constant")

STATE_FILE = "trainer_state.pt"
ARBITER_FILE = "arbiter_ppo.json"
PAD_TOKEN = "<|pad|>"

RewardFn = Callable[[list[PromptInput], list[str]], Sequence[float]]
OnStep = Callable[[int, int, dict[str, float], dict[str, Any]], None]
ShouldStop = Callable[[], bool]


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


# -- pure helpers ---------------------------------------------------------------------------------


def masked_mean(values: torch.Tensor, mask: torch.Tensor, axis: int | None = None) -> torch.Tensor:
    """Return the mean of `values` where `mask` is true (over `axis`, or over everything)."""
    mask = mask.to(values.dtype)
    if axis is None:
        return (values * mask).sum() / mask.sum()
    return (values * mask).sum(axis) / mask.sum(axis)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Return the variance of `values` where `mask` is true (Bessel-corrected when `unbiased`).

    A single masked value has variance 0 (rather than a division by zero).
    """
    count = mask.sum()
    if count == 0:
        raise ValueError("masked_var: the mask selects no values.")
    mean = masked_mean(values, mask)
    variance = masked_mean((values - mean) ** 2, mask)
    if unbiased and count > 1:
        variance = variance * count / (count - 1)
    return variance


def masked_whiten(
    values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True
) -> torch.Tensor:
    """Scale `values` to unit variance over the masked positions, centring them if `shift_mean`.

    Positions outside the mask are set to 0.
    """
    mean, variance = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * (variance + 1e-8).rsqrt()
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask.to(values.dtype)


def kl_per_token(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1"
) -> torch.Tensor:
    """Estimate KL(policy || reference) at each sampled token (Schulman's k1 or k3).

    k1 = log p - log p_ref (unbiased, can be negative per token);
    k3 = (r - 1) - log r with r = p_ref / p (unbiased, never negative, lower variance).
    """
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return (-log_ratio).expm1() + log_ratio
    raise ValueError(f"Unknown KL estimator {estimator!r}; use one of {choices(KL_ESTIMATORS)}.")


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    *,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (advantages, returns) by generalized advantage estimation over response tokens.

    Rows are responses, columns tokens; the episode ends after the last masked token, so the
    value after it is 0 (positions outside the mask get 0 advantage and 0 return).
    """
    mask = mask.to(values.dtype)
    rewards, values = rewards * mask, values * mask
    length = rewards.shape[1]
    advantages = rewards.new_zeros(rewards.shape)
    last_gae = rewards.new_zeros(rewards.shape[0])
    for t in reversed(range(length)):
        next_values = values[:, t + 1] if t < length - 1 else 0.0
        delta = rewards[:, t] + gamma * next_values - values[:, t]
        last_gae = delta + gamma * lam * last_gae
        advantages[:, t] = last_gae
    return advantages * mask, (advantages + values) * mask


def truncate_after_stop(
    responses: torch.Tensor, stop_ids: Sequence[int], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut each sampled response after its first stop (EOS) token.

    Return (responses with the tokens after the first stop replaced by `pad_id`, mask of the
    real tokens (the stop token included), index of the last real token, whether the response
    ended with a stop token). A response without a stop token keeps all its tokens: its last
    real token is the last position. The mask is positional, so a sampled pad id inside a
    response still counts as a real token.
    """
    import torch

    is_stop = torch.isin(responses, torch.tensor(list(stop_ids), device=responses.device))
    has_stop = is_stop.any(dim=1)
    length = responses.shape[1]
    first_stop = is_stop.int().argmax(dim=1)  # the first maximum: the first stop token
    last_index = torch.where(has_stop, first_stop, torch.full_like(first_stop, length - 1))
    positions = torch.arange(length, device=responses.device)
    mask = positions.unsqueeze(0) <= last_index.unsqueeze(1)
    return torch.where(mask, responses, pad_id), mask, last_index, has_stop


def per_token_rewards(
    scores: torch.Tensor,
    kl: torch.Tensor,
    mask: torch.Tensor,
    last_index: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (rewards, non_score_reward): `-beta * kl` at every real token, plus the score at
    the last real token of each response."""
    import torch

    non_score_reward = -beta * kl * mask.to(kl.dtype)
    rewards = non_score_reward.clone()
    rewards[torch.arange(len(scores), device=rewards.device), last_index] += scores
    return rewards, non_score_reward


def ppo_losses(
    *,
    new_logprobs: torch.Tensor,
    vpred: torch.Tensor,
    mb_logprobs: torch.Tensor,
    mb_values: torch.Tensor,
    mb_advantages: torch.Tensor,
    mb_returns: torch.Tensor,
    mb_mask: torch.Tensor,
    cliprange: float,
    cliprange_value: float,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Return (policy loss, value loss, stats): PPO's clipped objectives over the real tokens.

    Policy: max(-A * ratio, -A * clip(ratio, 1 - c, 1 + c)). Value: half the larger of the
    squared errors of the prediction and of the prediction clipped around its rollout value.
    Stats (floats): `pg_clipfrac`, `vf_clipfrac`, `approxkl` (mean of half the squared
    log-ratio), `ratio` (mean), and the two losses.
    """
    vpred_clipped = vpred.clamp(mb_values - cliprange_value, mb_values + cliprange_value)
    vf_losses1 = (vpred - mb_returns) ** 2
    vf_losses2 = (vpred_clipped - mb_returns) ** 2
    vf_loss = 0.5 * masked_mean(vf_losses1.maximum(vf_losses2), mb_mask)

    logprobs_diff = new_logprobs - mb_logprobs
    ratio = logprobs_diff.exp()
    pg_losses = -mb_advantages * ratio
    pg_losses2 = -mb_advantages * ratio.clamp(1.0 - cliprange, 1.0 + cliprange)
    pg_loss = masked_mean(pg_losses.maximum(pg_losses2), mb_mask)

    stats = {
        "pg_clipfrac": float(masked_mean((pg_losses2 > pg_losses).float(), mb_mask)),
        "vf_clipfrac": float(masked_mean((vf_losses2 > vf_losses1).float(), mb_mask)),
        "approxkl": float(0.5 * masked_mean(logprobs_diff.detach() ** 2, mb_mask)),
        "ratio": float(masked_mean(ratio.detach(), mb_mask)),
        "pg_loss": float(pg_loss.detach()),
        "vf_loss": float(vf_loss.detach()),
    }
    return pg_loss, vf_loss, stats


class KLController:
    """Beta of the KL penalty: fixed, or adaptive towards `target` (Ziegler et al., 2019)."""

    def __init__(self, beta: float, target: float | None = None, horizon: int = 10_000) -> None:
        self.beta = beta
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        """Move beta by the clipped proportional error of `current_kl` after `n_steps` rollouts."""
        if self.target is None:
            return
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.beta *= 1.0 + error * n_steps / self.horizon

    def state_dict(self) -> dict[str, float]:
        return {"beta": self.beta}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.beta = float(state["beta"])


class RunningMoments:
    """Running mean and (population) standard deviation of every value seen (Chan et al.)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0  # sum of squared deviations from the mean

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.count) if self.count else 1.0

    def update(self, values: torch.Tensor) -> None:
        """Add a batch of values."""
        n = values.numel()
        batch = values.double()
        batch_mean = float(batch.mean())
        batch_m2 = float(((batch - batch_mean) ** 2).sum())
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.m2 += batch_m2 + delta**2 * self.count * n / total
        self.count = total

    def state_dict(self) -> dict[str, float]:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.count, self.mean, self.m2 = (
            int(state["count"]),
            float(state["mean"]),
            float(state["m2"]),
        )


def normalize_scores(
    scores: torch.Tensor, mode: str, moments: RunningMoments, clip: float | None
) -> torch.Tensor:
    """Normalize scores ("none", "batch" or "running", updating `moments`), then clip them."""
    if mode == "batch":
        scores = (scores - scores.mean()) / (scores.std(correction=0) + 1e-8)
    elif mode == "running":
        moments.update(scores)
        scores = (scores - moments.mean) / (moments.std + 1e-8)
    if clip is not None:
        scores = scores.clamp(-clip, clip)
    return scores


class PromptSampler:
    """Serve prompt indices in a seeded shuffled order, epoch after epoch; resumable exactly."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        self.epoch, self.position = 0, 0

    def _order(self) -> list[int]:
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist()

    def next_batch(self, size: int) -> list[int]:
        """Return the next `size` indices, continuing into the next epoch's order when needed."""
        batch: list[int] = []
        order = self._order()
        while len(batch) < size:
            take = min(size - len(batch), self.n - self.position)
            batch += order[self.position : self.position + take]
            self.position += take
            if self.position == self.n:
                self.epoch, self.position = self.epoch + 1, 0
                order = self._order()
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


# -- model helpers --------------------------------------------------------------------------------


def ppo_generation_config(
    *, temperature: float, response_length: int, stop_ids: Sequence[int], pad_id: int
) -> GenerationConfig:
    """Return a pure sampling config: temperature only (no top-k, top-p or penalties).

    The log-probabilities are recomputed with a plain forward pass divided by the same
    temperature, which only matches sampling that applies nothing else. Pass it to
    `generate` with `use_model_defaults=False`, or the model's own defaults fill in.
    """
    from transformers import GenerationConfig

    return GenerationConfig(
        do_sample=True,
        temperature=temperature,
        top_k=0,
        top_p=1.0,
        max_new_tokens=response_length,
        min_new_tokens=0,
        eos_token_id=list(stop_ids),
        pad_token_id=pad_id,
    )


def position_ids_for(attention_mask: torch.Tensor) -> torch.Tensor:
    """Return position ids counting only real tokens (left padding gets 0), as `generate` does."""
    return (attention_mask.long().cumsum(1) - 1).clamp(min=0)


def forward_logprobs(
    model: nn.Module,
    query_responses: torch.Tensor,
    attention_mask: torch.Tensor,
    context_length: int,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (log-probs of the response tokens, entropy per position), both at `temperature`.

    The entropy is computed without gradient: it is only reported.
    """
    logits = model(
        input_ids=query_responses,
        attention_mask=attention_mask,
        position_ids=position_ids_for(attention_mask),
        use_cache=False,
    ).logits
    logits = logits[:, context_length - 1 : -1].float() / temperature
    all_logprobs = logits.log_softmax(dim=-1)
    responses = query_responses[:, context_length:]
    logprobs = all_logprobs.gather(-1, responses.unsqueeze(-1)).squeeze(-1)
    detached = all_logprobs.detach()
    entropy = -(detached.exp() * detached).sum(-1)
    return logprobs, entropy


def forward_values(
    value_model: nn.Module,
    query_responses: torch.Tensor,
    attention_mask: torch.Tensor,
    context_length: int,
) -> torch.Tensor:
    """Return the value of the state before each response token: the reward model's score
    head applied to every hidden state of its backbone."""
    backbone = getattr(value_model, value_model.base_model_prefix)
    hidden = backbone(
        input_ids=query_responses,
        attention_mask=attention_mask,
        position_ids=position_ids_for(attention_mask),
        use_cache=False,
    ).last_hidden_state
    return _value_head(value_model)(hidden[:, context_length - 1 : -1]).squeeze(-1).float()


def disable_dropout(model: nn.Module) -> None:
    """Turn every dropout of `model` off, so that rollout and update compute the same log-probs."""
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        # Attention implementations that read a float rate (Llama, Qwen, Mistral, ...).
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0
    for key, value in vars(model.config).items():
        if "dropout" in key and isinstance(value, float):
            setattr(model.config, key, 0.0)


def prompt_messages(prompt: Any, where: str) -> list[dict[str, str]]:
    """Return a prompt as the reward model reads it: chat messages (a string is one user message).

    The last message must not be the assistant's: the policy writes that reply.
    """
    if isinstance(prompt, str):
        if not prompt.strip():
            raise FormatError(f"{where}: is an empty string")
        return [{"role": "user", "content": prompt}]
    messages = check_messages(prompt, where)
    if messages[-1]["role"] == "assistant":
        raise FormatError(
            f"{where}: ends with an assistant message; a prompt ends with the user (or system) "
            "turn the policy answers"
        )
    return messages


# -- the trainer ----------------------------------------------------------------------------------


class PPOTrainer:
    """Load the models of a PPO run (or its checkpoint) and train the policy with `train()`."""

    def __init__(
        self,
        config: PPOConfig,
        *,
        prompts: Sequence[PromptInput],
        policy_path: str | Path,
        reward_model_path: str | Path,
        reference_path: str | Path | None = None,
        model_roots: Iterable[str | Path] | None = None,
        reward_fn: RewardFn | None = None,
        resume_from_checkpoint: bool | str | Path | None = None,
    ) -> None:
        import torch
        from transformers import (
            AutoModelForCausalLM,
            AutoModelForSequenceClassification,
            AutoTokenizer,
            set_seed,
        )

        from training.scoring import load_scorer

        self.config = config
        self.reward_fn = reward_fn
        self.output_dir = Path(config.output_dir)
        self.checkpoint_root = self.output_dir / CHECKPOINTS
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

        # Prompts, checked before anything loads
        if isinstance(prompts, str | bytes) or not isinstance(prompts, Sequence) or not prompts:
            raise FormatError(
                "prompts: must be a non-empty list of prompts (strings or lists of "
                "{'role': ..., 'content': ...} messages)"
            )
        self.prompts = list(prompts)
        self.messages = [prompt_messages(p, f"prompts[{i}]") for i, p in enumerate(prompts)]

        # Local model folders only
        self.policy_dir = resolve_model_dir(policy_path, model_roots)
        self.reward_dir = resolve_model_dir(reward_model_path, model_roots)
        self.reference_dir = (
            resolve_model_dir(reference_path, model_roots)
            if reference_path is not None
            else self.policy_dir
        )
        resume_dir = self._prepare_output_dir(resume_from_checkpoint)
        state = (
            torch.load(resume_dir / STATE_FILE, map_location="cpu", weights_only=True)
            if resume_dir
            else None
        )

        # Tokenizer: left padding, a pad token distinct from EOS, a chat template
        start_dir = resume_dir / "policy" if resume_dir else self.policy_dir
        tokenizer = AutoTokenizer.from_pretrained(start_dir, local_files_only=True)
        base_vocab = AutoTokenizer.from_pretrained(
            self.policy_dir, local_files_only=True
        ).get_vocab()
        self.tokenizer_changes = (
            list(state["tokenizer_changes"]) if state else _prepare_policy_tokenizer(tokenizer)
        )
        tokenizer.padding_side = "left"
        self.tokenizer = tokenizer
        self._check_same_vocab(base_vocab, self.reward_dir, "reward_model_path")
        if reference_path is not None:
            self._check_same_vocab(base_vocab, self.reference_dir, "reference_path")

        # Models: policy, frozen reference, value model from the reward model, reward scorer
        self.policy = self._load(AutoModelForCausalLM, start_dir)
        self.reference = self._load(AutoModelForCausalLM, self.reference_dir)
        self.value_model = self._load(
            AutoModelForSequenceClassification,
            resume_dir / "value" if resume_dir else self.reward_dir,
            num_labels=1,
        )
        _value_head(self.value_model)  # refuse a reward model without a per-token score head
        self.reference.requires_grad_(False).eval()
        self.scorer: RewardScorer | None = None
        if reward_fn is None:
            self.scorer = load_scorer(self.reward_dir, device=str(self.device))
            self.scorer.model.requires_grad_(False)
        self.pad_id = tokenizer.pad_token_id
        self.stop_ids = sorted(eos_token_ids(tokenizer, self.policy) - {self.pad_id})

        # Prompt token ids, rendered as generation renders them, cut from the front
        special = frozenset(tokenizer.all_special_ids)
        self.prompt_ids = [
            truncate_left(encode_prompt(tokenizer, p), config.max_prompt_length, special)
            for p in self.prompts
        ]
        limit = getattr(self.policy.config, "max_position_embeddings", None)
        longest = max(len(ids) for ids in self.prompt_ids)
        if limit is not None and longest + config.response_length > limit:
            raise ConfigError(
                "response_length",
                f"The longest prompt ({longest} tokens) plus `response_length` "
                f"({config.response_length}) exceeds the policy's position limit "
                f"(max_position_embeddings={limit}). Lower `response_length` or `max_prompt_length`.",
            )

        # Optimizers, learning-rate schedules and the state that a checkpoint restores
        self.total_steps = config.total_steps
        self.policy_optimizer = torch.optim.Adam(
            self.policy.parameters(), lr=config.learning_rate, eps=config.adam_eps
        )
        self.value_optimizer = torch.optim.Adam(
            self.value_model.parameters(), lr=config.learning_rate, eps=config.adam_eps
        )
        decay = _lr_lambda(config.lr_decay, self.total_steps)
        self.policy_scheduler = torch.optim.lr_scheduler.LambdaLR(self.policy_optimizer, decay)
        self.value_scheduler = torch.optim.lr_scheduler.LambdaLR(self.value_optimizer, decay)
        self.sampler = PromptSampler(len(self.prompts), config.seed)
        self.kl_ctl = KLController(config.kl_coef, config.kl_target, config.kl_horizon)
        self.reward_moments = RunningMoments()
        self.global_step = 0
        self.log_history: list[dict[str, float]] = []
        self.warnings: list[str] = []
        self.samples: list[dict[str, Any]] = []
        if state is not None:
            self._load_state(state)
        else:
            set_seed(config.seed)  # the trajectory depends on the seed only, not on the loading

    # -- the loop -------------------------------------------------------------------------------

    def train(
        self, *, on_step: OnStep | None = None, should_stop: ShouldStop | None = None
    ) -> PPOResult:
        """Run the remaining PPO steps and save the policy; return the run's result.

        `on_step(step, total_steps, metrics, details)` is called after every step with the
        metrics and `details = {"warnings": [...], "samples": [...] or None}`. `should_stop()`
        is polled after every step; when it returns True a checkpoint is saved and the result
        has status "stopped".
        """
        import torch

        config = self.config
        started = time.perf_counter()
        micro_size = config.mini_batch_size // config.gradient_accumulation_steps
        stopped = False

        while self.global_step < self.total_steps:
            step = self.global_step + 1

            # 1. Rollout ----------------------------------------------------------------------
            b_prompt_index = self.sampler.next_batch(config.batch_size)
            b_query, b_query_mask = self._left_pad([self.prompt_ids[i] for i in b_prompt_index])
            context_length = b_query.shape[1]
            self.policy.eval()
            self.value_model.eval()
            with torch.no_grad():
                b_raw_response = self._sample(b_query, b_query_mask)
                b_response, b_mask, b_last_index, b_has_eos = truncate_after_stop(
                    b_raw_response, self.stop_ids, self.pad_id
                )
                b_query_response = torch.cat([b_query, b_response], dim=1)
                b_attention_mask = torch.cat([b_query_mask, b_mask.long()], dim=1)
                b_logprobs, b_entropy, b_ref_logprobs, b_values = [], [], [], []
                for start in range(0, config.batch_size, micro_size):
                    rows = slice(start, start + micro_size)
                    args = (b_query_response[rows], b_attention_mask[rows], context_length)
                    logprobs, entropy = forward_logprobs(self.policy, *args, config.temperature)
                    ref_logprobs, _ = forward_logprobs(self.reference, *args, config.temperature)
                    b_logprobs.append(logprobs)
                    b_entropy.append(entropy)
                    b_ref_logprobs.append(ref_logprobs)
                    b_values.append(forward_values(self.value_model, *args))
                b_logprobs, b_entropy = torch.cat(b_logprobs), torch.cat(b_entropy)
                b_ref_logprobs, b_values = torch.cat(b_ref_logprobs), torch.cat(b_values)

            # 2. Score ------------------------------------------------------------------------
            prompts = [self.prompts[i] for i in b_prompt_index]
            texts = self._decode(b_response, b_last_index, b_has_eos)
            raw_scores = self._score(b_prompt_index, prompts, texts)
            b_scores = raw_scores.clone()
            if config.missing_eos_penalty is not None:
                b_scores[~b_has_eos] -= config.missing_eos_penalty
            penalized_scores = b_scores.clone()
            b_scores = normalize_scores(
                b_scores, config.reward_normalization, self.reward_moments, config.reward_clip
            )
            b_mask_f = b_mask.float()
            b_log_ratio = (b_logprobs - b_ref_logprobs) * b_mask_f
            b_kl = kl_per_token(b_logprobs, b_ref_logprobs, config.kl_estimator) * b_mask_f
            beta = self.kl_ctl.beta
            b_rewards, b_non_score_reward = per_token_rewards(
                b_scores, b_kl, b_mask, b_last_index, beta
            )

            # 3. Advantages -------------------------------------------------------------------
            if config.whiten_rewards:
                b_rewards = masked_whiten(b_rewards, b_mask, shift_mean=False)
            b_advantages, b_returns = compute_gae(
                b_rewards, b_values, b_mask, gamma=config.gamma, lam=config.lam
            )
            b_advantages = masked_whiten(b_advantages, b_mask)

            # 4. Update -----------------------------------------------------------------------
            self.policy.train()
            self.value_model.train()
            num_minibatches = config.batch_size // config.mini_batch_size
            shape = (config.num_ppo_epochs, num_minibatches, config.gradient_accumulation_steps)
            names = (
                "approxkl",
                "pg_clipfrac",
                "pg_loss",
                "vf_loss",
                "vf_clipfrac",
                "entropy",
                "ratio",
            )
            stats = {name: torch.zeros(shape) for name in names}
            grad_norms = []
            params = [*self.policy.parameters(), *self.value_model.parameters()]
            for epoch in range(config.num_ppo_epochs):
                b_inds = torch.randperm(config.batch_size).to(self.device)
                for mb_index in range(num_minibatches):
                    for acc in range(config.gradient_accumulation_steps):
                        offset = mb_index * config.mini_batch_size + acc * micro_size
                        mb_inds = b_inds[offset : offset + micro_size]
                        mb_mask = b_mask[mb_inds]
                        args = (
                            b_query_response[mb_inds],
                            b_attention_mask[mb_inds],
                            context_length,
                        )
                        new_logprobs, new_entropy = forward_logprobs(
                            self.policy, *args, config.temperature
                        )
                        vpred = forward_values(self.value_model, *args)
                        pg_loss, vf_loss, mb_stats = ppo_losses(
                            new_logprobs=new_logprobs,
                            vpred=vpred,
                            mb_logprobs=b_logprobs[mb_inds],
                            mb_values=b_values[mb_inds],
                            mb_advantages=b_advantages[mb_inds],
                            mb_returns=b_returns[mb_inds],
                            mb_mask=mb_mask,
                            cliprange=config.cliprange,
                            cliprange_value=config.cliprange_value,
                        )
                        loss = pg_loss + config.vf_coef * vf_loss
                        if not torch.isfinite(loss):
                            raise FloatingPointError(
                                f"step {step}: the PPO loss is not finite ({loss.item()}); the last "
                                "checkpoint is kept. Lower `learning_rate`, or check the scores "
                                "(reward_clip and reward_normalization bound them)."
                            )
                        (loss / config.gradient_accumulation_steps).backward()
                        mb_stats["entropy"] = float(masked_mean(new_entropy, mb_mask))
                        for name, value in mb_stats.items():
                            stats[name][epoch, mb_index, acc] = value
                    grad_norms.append(
                        float(torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm))
                    )
                    self.policy_optimizer.step()
                    self.value_optimizer.step()
                    self.policy_optimizer.zero_grad(set_to_none=True)
                    self.value_optimizer.zero_grad(set_to_none=True)
            lr = self.policy_scheduler.get_last_lr()[0]
            self.policy_scheduler.step()
            self.value_scheduler.step()

            # 5. Log --------------------------------------------------------------------------
            with torch.no_grad():
                kl_sums = b_kl.sum(1)
                mean_kl = float(kl_sums.mean())
                non_score = b_non_score_reward.sum(1)
                metrics = {
                    "episode": float(step * config.batch_size),
                    "objective/kl": mean_kl,
                    "objective/entropy": float((b_entropy * b_mask_f).sum(1).mean()),
                    "objective/non_score_reward": float(non_score.mean()),
                    "objective/rlhf_reward": float((b_scores + non_score).mean()),
                    "objective/scores": float(penalized_scores.mean()),
                    "policy/approxkl_avg": float(stats["approxkl"].mean()),
                    "policy/clipfrac_avg": float(stats["pg_clipfrac"].mean()),
                    "policy/entropy_avg": float(stats["entropy"].mean()),
                    "loss/policy_avg": float(stats["pg_loss"].mean()),
                    "loss/value_avg": float(stats["vf_loss"].mean()),
                    "val/clipfrac_avg": float(stats["vf_clipfrac"].mean()),
                    "val/ratio": float(stats["ratio"].mean()),
                    "val/ratio_var": float(stats["ratio"].var(correction=0)),
                    "val/num_eos_tokens": float(b_has_eos.sum()),
                    "eos_rate": float(b_has_eos.float().mean()),
                    "response_length": float(b_mask_f.sum(1).mean()),
                    "grad_norm": float(np.mean(grad_norms)),
                    "lr": float(lr),
                    "beta": float(beta),
                }
            new_warnings = step_warnings(
                step,
                kl=mean_kl,
                log_ratio_sums=b_log_ratio.sum(1),
                texts=texts,
                kl_threshold=config.kl_warning_threshold,
            )
            self.kl_ctl.update(mean_kl, config.batch_size)
            table = None
            if config.sample_steps is not None and (step == 1 or step % config.sample_steps == 0):
                table = [
                    {
                        "prompt": self.messages[i][-1]["content"],
                        "response": texts[row],
                        "score": float(raw_scores[row]),
                    }
                    for row, i in enumerate(b_prompt_index[: config.sample_rows])
                ]
                self.samples = table
            self.global_step = step
            self.log_history.append({"step": float(step), **metrics})
            self.warnings += new_warnings
            if on_step is not None:
                on_step(
                    step, self.total_steps, metrics, {"warnings": new_warnings, "samples": table}
                )

            # 6. Checkpoint -------------------------------------------------------------------
            stopped = should_stop is not None and should_stop() and step < self.total_steps
            if step % config.save_steps == 0 or stopped:
                self._save_checkpoint()
            if stopped:
                break

        result = PPOResult(
            status="stopped" if stopped else "completed",
            global_step=self.global_step,
            total_steps=self.total_steps,
            metrics=(
                {k: v for k, v in self.log_history[-1].items() if k != "step"}
                if self.log_history
                else {}
            ),
            log_history=list(self.log_history),
            warnings=list(self.warnings),
            samples=list(self.samples),
            artifact_dir=None,
            checkpoint_dir=_last_checkpoint(self.checkpoint_root),
            train_runtime=time.perf_counter() - started,
            tokenizer_changes=list(self.tokenizer_changes),
        )
        if not stopped:
            result.artifact_dir = self._save_artifacts(result)
        return result

    # -- rollout and scoring --------------------------------------------------------------------

    def _left_pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
        return ids.to(self.device), mask.to(self.device)

    def _sample(self, b_query: torch.Tensor, b_query_mask: torch.Tensor) -> torch.Tensor:
        """Sample responses, padded to exactly `response_length` tokens."""
        from torch.nn.functional import pad

        generation_config = ppo_generation_config(
            temperature=self.config.temperature,
            response_length=self.config.response_length,
            stop_ids=self.stop_ids,
            pad_id=self.pad_id,
        )
        output = self.policy.generate(
            input_ids=b_query,
            attention_mask=b_query_mask,
            generation_config=generation_config,
            use_model_defaults=False,
        )
        responses = output[:, b_query.shape[1] :]
        missing = self.config.response_length - responses.shape[1]
        return pad(responses, (0, missing), value=self.pad_id) if missing else responses

    def _decode(
        self, b_response: torch.Tensor, b_last_index: torch.Tensor, b_has_eos: torch.Tensor
    ) -> list[str]:
        """Return the response texts, without their EOS and surrounding spaces (as generated
        replies are stored: a byte-level tokenizer puts the space before the first word)."""
        texts = []
        for row, last, has_eos in zip(
            b_response.tolist(), b_last_index.tolist(), b_has_eos.tolist(), strict=True
        ):
            end = last if has_eos else last + 1
            texts.append(self.tokenizer.decode(row[:end], skip_special_tokens=True).strip())
        return texts

    def _score(
        self, indices: list[int], prompts: list[PromptInput], texts: list[str]
    ) -> torch.Tensor:
        import torch

        if self.reward_fn is not None:
            scores = list(self.reward_fn(prompts, texts))
            if len(scores) != len(texts) or not all(
                isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(s)
                for s in scores
            ):
                raise ValueError(
                    f"reward_fn must return one finite number per response ({len(texts)}), got "
                    f"{scores!r:.200}."
                )
        else:
            assert self.scorer is not None
            scores = self.scorer.score(
                [(self.messages[i], text) for i, text in zip(indices, texts, strict=True)]
            )
        return torch.tensor(scores, dtype=torch.float32, device=self.device)

    # -- loading and saving ---------------------------------------------------------------------

    def _load(self, auto_class: Any, path: Path, **kwargs: Any) -> nn.Module:
        import torch

        model = auto_class.from_pretrained(
            path, local_files_only=True, dtype=torch.float32, **kwargs
        )
        _resize_embeddings(model, len(self.tokenizer))
        model.config.pad_token_id = self.tokenizer.pad_token_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.pad_token_id = self.tokenizer.pad_token_id
        disable_dropout(model)
        return model.to(self.device)

    def _check_same_vocab(self, base_vocab: dict[str, int], model_dir: Path, name: str) -> None:
        from transformers import AutoTokenizer

        other = AutoTokenizer.from_pretrained(model_dir, local_files_only=True).get_vocab()
        if other != base_vocab:
            raise ValueError(
                f"`{name}` ({model_dir}) uses a different tokenizer from the policy: it must read the "
                "policy's tokens. Use a model trained from the same base model as the policy."
            )

    def _prepare_output_dir(self, resume_from_checkpoint: bool | str | Path | None) -> Path | None:
        """Record the run's identity; on resume, check it matches and return the checkpoint."""
        run = {
            "config": self.config.to_dict(),
            "prompts": fingerprint(self.prompts),
            "policy_path": str(self.policy_dir),
            "reward_model_path": str(self.reward_dir),
            "reference_path": str(self.reference_dir),
            "reward_fn": self.reward_fn is not None,
        }
        return prepare_output_dir(
            self.output_dir,
            run,
            resume_from_checkpoint,
            same="config, prompts and models",
            describe_change=lambda changed: f"the {', '.join(changed)} differ(s)",
            last_checkpoint=_last_checkpoint,
            state_file=STATE_FILE,
            kind="PPO",
        )

    def _save_checkpoint(self) -> Path:
        """Write policy, value model, optimizers, schedules, RNG and data state; keep the newest."""
        import torch

        path = self.checkpoint_root / f"checkpoint-{self.global_step}"
        partial = path.with_name(path.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        self.policy.save_pretrained(partial / "policy", safe_serialization=True)
        self.tokenizer.save_pretrained(partial / "policy")
        self.value_model.save_pretrained(partial / "value", safe_serialization=True)
        numpy_state = np.random.get_state(legacy=False)
        state = {
            "global_step": self.global_step,
            "policy_optimizer": self.policy_optimizer.state_dict(),
            "value_optimizer": self.value_optimizer.state_dict(),
            "policy_scheduler": self.policy_scheduler.state_dict(),
            "value_scheduler": self.value_scheduler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "kl_controller": self.kl_ctl.state_dict(),
            "reward_moments": self.reward_moments.state_dict(),
            "rng": {
                "python": random.getstate(),
                "numpy": {
                    "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                    "pos": int(numpy_state["state"]["pos"]),
                    "has_gauss": int(numpy_state["has_gauss"]),
                    "gauss": float(numpy_state["gauss"]),
                },
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            "log_history": self.log_history,
            "warnings": self.warnings,
            "samples": self.samples,
            "tokenizer_changes": self.tokenizer_changes,
        }
        torch.save(state, partial / STATE_FILE)
        shutil.rmtree(path, ignore_errors=True)
        partial.rename(path)  # a checkpoint is complete or absent, never half written
        if self.config.save_total_limit is not None:
            for old in _checkpoints(self.checkpoint_root)[: -self.config.save_total_limit]:
                shutil.rmtree(old)
        return path

    def _load_state(self, state: dict[str, Any]) -> None:
        import torch

        self.global_step = int(state["global_step"])
        self.policy_optimizer.load_state_dict(state["policy_optimizer"])
        self.value_optimizer.load_state_dict(state["value_optimizer"])
        self.policy_scheduler.load_state_dict(state["policy_scheduler"])
        self.value_scheduler.load_state_dict(state["value_scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        self.kl_ctl.load_state_dict(state["kl_controller"])
        self.reward_moments.load_state_dict(state["reward_moments"])
        self.log_history = list(state["log_history"])
        self.warnings = list(state["warnings"])
        self.samples = list(state["samples"])
        # Random states last: nothing may draw from them between here and the next step.
        rng = state["rng"]
        random.setstate(rng["python"])
        np.random.set_state(
            {
                "bit_generator": "MT19937",
                "state": {
                    "key": rng["numpy"]["key"].numpy().astype(np.uint32),
                    "pos": rng["numpy"]["pos"],
                },
                "has_gauss": rng["numpy"]["has_gauss"],
                "gauss": rng["numpy"]["gauss"],
            }
        )
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])

    def _save_artifacts(self, result: PPOResult) -> Path:
        artifact_dir = self.output_dir / MODEL
        self.policy.save_pretrained(artifact_dir, safe_serialization=True)
        self.tokenizer.save_pretrained(artifact_dir)
        summary = {
            "policy_path": str(self.policy_dir),
            "reference_path": str(self.reference_dir),
            "reward_model_path": str(self.reward_dir),
            "reward": "reward_fn" if self.reward_fn is not None else "reward model",
            "prompts": len(self.prompts),
            "prompts_hash": fingerprint(self.prompts),
            "config": self.config.to_dict(),
            "tokenizer_changes": self.tokenizer_changes,
            "global_step": result.global_step,
            "episodes": result.global_step * self.config.batch_size,
            "metrics": result.metrics,
            "log_history": result.log_history,
            "warnings": result.warnings,
            "samples": result.samples,
            "versions": versions("torch", "transformers"),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (artifact_dir / ARBITER_FILE).write_text(
            json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
        )
        (artifact_dir / "README.md").write_text(model_card(summary))
        return artifact_dir


def train_ppo(
    config: PPOConfig,
    *,
    prompts: Sequence[PromptInput],
    policy_path: str | Path,
    reward_model_path: str | Path,
    reference_path: str | Path | None = None,
    model_roots: Iterable[str | Path] | None = None,
    reward_fn: RewardFn | None = None,
    on_step: OnStep | None = None,
    should_stop: ShouldStop | None = None,
    resume_from_checkpoint: bool | str | Path | None = None,
) -> PPOResult:
    """Train the policy at `policy_path` with PPO against a reward model and save it.

    Prompts are lists of {role, content} messages ending with a user or system turn, or
    strings: the policy continues a string as plain text (as `training.generation` samples
    it) and the reward model reads it as one user message. The reward is the reward model's
    score of (prompt, response), read the way `training.scoring` reads it, unless
    `reward_fn(prompts, responses)` is given: it then replaces the score (the value model
    still starts from the reward model). The reference policy is `reference_path`, by
    default the starting policy. With `model_roots` every model path must lie under one of
    them. `on_step(step, total_steps, metrics, details)` is called after every step;
    `should_stop()` is polled after every step and stops the run with a checkpoint. A later
    call with the same arguments and `resume_from_checkpoint=True` (the latest checkpoint) or
    a checkpoint path continues on exactly the trajectory an uninterrupted run would have
    taken.
    """
    trainer = PPOTrainer(
        config,
        prompts=prompts,
        policy_path=policy_path,
        reward_model_path=reward_model_path,
        reference_path=reference_path,
        model_roots=model_roots,
        reward_fn=reward_fn,
        resume_from_checkpoint=resume_from_checkpoint,
    )
    return trainer.train(on_step=on_step, should_stop=should_stop)


def model_card(summary: dict[str, Any]) -> str:
    """Render the README.md saved with a PPO-trained policy."""
    config = summary["config"]
    warnings = "\n".join(f"- {w}" for w in summary["warnings"]) or "none"
    kl = (
        f"adaptive (target {config['kl_target']}, horizon {config['kl_horizon']}, start "
        f"{config['kl_coef']})"
        if config["kl_target"] is not None
        else f"fixed beta {config['kl_coef']}"
    )
    return f"""---
library_name: transformers
pipeline_tag: text-generation
tags: [arbiter, ppo, rlhf]
---

# PPO policy

Trained by Arbiter's PPO trainer from the local policy `{summary["policy_path"]}` against
{"a reward function" if summary["reward"] == "reward_fn" else f"the reward model `{summary['reward_model_path']}`"}
(value model initialized from `{summary["reward_model_path"]}`), with the reference policy
`{summary["reference_path"]}`.

- {summary["global_step"]} steps, {summary["episodes"]} episodes over {summary["prompts"]} prompts
  (hash `{summary["prompts_hash"]}`)
- sampling at temperature {config["temperature"]}, {config["response_length"]} tokens at most;
  missing-EOS penalty {config["missing_eos_penalty"]}
- KL penalty `{config["kl_estimator"]}`, {kl}; GAE gamma {config["gamma"]}, lambda {config["lam"]};
  clip {config["cliprange"]} (policy) / {config["cliprange_value"]} (value)

## Last step

{card_metric_table(summary["metrics"])}

## Warnings

{warnings}

## Config

```json
{json.dumps(config, indent=2)}
```

## Use

Prompts are rendered with the saved chat template (generation prompt included) and padded on
the left; the pad token is `{PAD_TOKEN}` where one had to be added.
{card_provenance(summary)}.
"""


# -- private helpers ------------------------------------------------------------------------------


def _prepare_policy_tokenizer(tokenizer: Any) -> list[str]:
    """Give the policy tokenizer a chat template and a pad token distinct from EOS.

    A pad token equal to EOS would make padding indistinguishable from a real end of reply.
    """
    changes: list[str] = []
    if tokenizer.eos_token is None:
        raise FormatError(
            "The policy tokenizer has no EOS token, so a response can never end. Set one "
            "(tokenizer.eos_token = ...) and save the tokenizer with the policy."
        )
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
        changes.append(f"pad_token {PAD_TOKEN!r} added (distinct from the EOS token)")
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
        changes.append("chat_template set to Arbiter's plain 'Role: content' template")
    return changes


def _resize_embeddings(model: Any, size: int) -> None:
    """Grow the vocabulary to `size`, new rows set to the mean of the old ones.

    Deterministic (unlike the random initialization of `resize_token_embeddings`), so a
    resumed run rebuilds exactly the same reference model.
    """
    import torch

    old = model.get_input_embeddings().weight.shape[0]
    if old >= size:
        return
    model.resize_token_embeddings(size, mean_resizing=False)
    with torch.no_grad():
        for layer in (model.get_input_embeddings(), model.get_output_embeddings()):
            if layer is not None:
                layer.weight[old:] = layer.weight[:old].mean(dim=0)
                if getattr(layer, "bias", None) is not None:
                    layer.bias[old:] = layer.bias[:old].mean()


def _value_head(model: Any) -> nn.Linear:
    from torch import nn

    head = getattr(model, "score", None)
    if not isinstance(head, nn.Linear):
        head = getattr(model, "classifier", None)
    if not isinstance(head, nn.Linear) or head.out_features != 1:
        raise ValueError(
            f"The reward model ({type(model).__name__}) has no one-output linear score head to "
            "initialize the value model from. Use a decoder-style reward model "
            "(AutoModelForSequenceClassification with num_labels=1, e.g. one trained by Arbiter "
            "from the policy's base model)."
        )
    return head


def _lr_lambda(decay: str, total_steps: int) -> Callable[[int], float]:
    if decay == "constant":
        return lambda step: 1.0
    return lambda step: max(0.0, 1.0 - step / total_steps)


def step_warnings(
    step: int,
    *,
    kl: float,
    log_ratio_sums: torch.Tensor,
    texts: list[str],
    kl_threshold: float,
) -> list[str]:
    """Return the warnings of one step: negative or exploding KL, responses collapsed to one.

    `kl` is `objective/kl`; `log_ratio_sums` the k1 sum of each response, whose mean is
    compared with 0 (three standard errors below it is no sampling noise).
    """
    warnings = []
    # The k1 sum estimates KL(policy || reference) >= 0; clearly below 0 means the sampled
    # tokens were not drawn from the distribution the log-probs were computed from.
    mean = float(log_ratio_sums.mean())
    stderr = float(log_ratio_sums.std(correction=0)) / math.sqrt(len(log_ratio_sums))
    if mean < -max(0.01, 3 * stderr):
        warnings.append(
            f"step {step}: the KL estimate is negative ({mean:.4f} ± {stderr:.4f} nats): the "
            "responses are less likely under the policy than under the reference, which happens "
            "when sampling settings differ from the ones log-probs are computed with."
        )
    if kl > kl_threshold:
        warnings.append(
            f"step {step}: objective/kl is {kl:.2f} nats, above "
            f"{kl_threshold}: the policy is drifting far from the reference (reward hacking is "
            "likely). Raise `kl_coef`, set `kl_target`, or lower `learning_rate`."
        )
    if len(texts) > 1 and len(set(texts)) == 1:
        warnings.append(
            f"step {step}: all {len(texts)} responses are the same text ({texts[0][:80]!r}): the "
            "policy has collapsed to one answer. Raise `kl_coef` or lower `learning_rate`."
        )
    return warnings


def _checkpoints(checkpoint_root: Path) -> list[Path]:
    if not checkpoint_root.is_dir():
        return []
    found = [
        p
        for p in checkpoint_root.iterdir()
        if p.is_dir()
        and p.name.startswith("checkpoint-")
        and p.name[11:].isdigit()
        and (p / STATE_FILE).is_file()
    ]
    return sorted(found, key=lambda p: int(p.name[11:]))


def _last_checkpoint(checkpoint_root: Path) -> Path | None:
    found = _checkpoints(checkpoint_root)
    return found[-1] if found else None


__all__ = [
    "KLController",
    "PPOConfig",
    "PPOResult",
    "PPOTrainer",
    "compute_gae",
    "kl_per_token",
    "masked_mean",
    "masked_var",
    "masked_whiten",
    "per_token_rewards",
    "ppo_losses",
    "step_warnings",
    "train_ppo",
    "truncate_after_stop",
]


def train_ppo_run(
    config: PPOConfig,
    *,
    dataset: Sequence[dict[str, Any]],
    base_model_path: str | Path,
    model_roots: Iterable[str | Path] | None = None,
    dataset_hash: str = "",
    on_step: Callable[..., None] | None = None,
    should_stop: ShouldStop | None = None,
    resume_from_checkpoint: bool | str | Path | None = None,
) -> PPOResult:
    """Run `train_ppo` under the training runs' calling convention (`training.runner`).

    The rows are prompt rows (`{"prompt": [messages]}`) of a campaign or a dataset snapshot; the
    run's base model is the policy; the reward model (and reference) come from the config.
    """
    del dataset_hash  # the prompts' own fingerprint guards resumes
    if not config.reward_model_path:
        raise ConfigError(
            "reward_model_path", "A PPO run needs `reward_model_path`: a trained reward-model folder."
        )
    prompts = [row["prompt"] for row in dataset]
    return train_ppo(
        config,
        prompts=prompts,
        policy_path=base_model_path,
        reward_model_path=config.reward_model_path,
        reference_path=config.reference_path or None,
        model_roots=model_roots,
        on_step=on_step,
        should_stop=should_stop,
        resume_from_checkpoint=resume_from_checkpoint,
    )


def _register() -> None:
    from training.runner import TrainerSpec, register

    register(
        TrainerSpec(
            kind="ppo",
            config_class="training.ppo:PPOConfig",
            train="training.ppo:train_ppo_run",
            title="PPO",
            data="prompts",
            choices={
                "kl_estimator": KL_ESTIMATORS,
                "reward_normalization": REWARD_NORMALIZATIONS,
                "lr_decay": LR_DECAYS,
            },
            model_paths=("reward_model_path", "reference_path"),
            required_model_paths=("reward_model_path",),
            multi_gpu=False,  # one device: the rollout, scoring and update share it
        )
    )


_register()
