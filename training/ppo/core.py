"""PPO's pure math and bookkeeping, on torch tensors only: no models, no transformers, no Django.

Masked statistics, the KL estimators, generalized advantage estimation, the clipped losses, the
per-token rewards, the KL controller, score normalization, the prompt order and the step
warnings. Each is tested on its own against hand-computed values. torch is imported inside the
functions that create tensors, so that importing this module costs nothing without it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from training.config import choices
from training.ppo.config import KL_ESTIMATORS

if TYPE_CHECKING:
    import torch


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


def lr_lambda(decay: str, total_steps: int) -> Callable[[int], float]:
    """Return the learning-rate factor of each step: 1 throughout (`"constant"`) or falling linearly to 0."""
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


__all__ = [
    "KLController",
    "PromptSampler",
    "RunningMoments",
    "compute_gae",
    "kl_per_token",
    "lr_lambda",
    "masked_mean",
    "masked_var",
    "masked_whiten",
    "normalize_scores",
    "per_token_rewards",
    "ppo_losses",
    "step_warnings",
    "truncate_after_stop",
]
