"""PPO's pure helpers against hand-computed values."""

import math

import pytest

pytestmark = pytest.mark.training
torch = pytest.importorskip("torch")

from training.ppo.core import (  # noqa: E402
    KLController,
    RunningMoments,
    compute_gae,
    kl_per_token,
    masked_mean,
    masked_var,
    masked_whiten,
    per_token_rewards,
    ppo_losses,
    step_warnings,
    truncate_after_stop,
)


def test_masked_mean_var_and_whiten_match_hand_computed_values():
    """Only masked values count: mean 7/3, unbiased variance 7/3 of (1, 2, 4); whitened zeros outside."""
    values = torch.tensor([[1.0, 2.0, 30.0], [4.0, 50.0, 60.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert masked_mean(values, mask).item() == pytest.approx(7 / 3)
    assert masked_mean(values, mask, axis=1).tolist() == pytest.approx([1.5, 4.0])
    assert masked_var(values, mask).item() == pytest.approx(7 / 3)
    assert masked_var(values, mask, unbiased=False).item() == pytest.approx(14 / 9)
    assert masked_var(torch.tensor([5.0, 9.0]), torch.tensor([1, 0])).item() == 0.0

    std = math.sqrt(7 / 3)
    expected = [[(1 - 7 / 3) / std, (2 - 7 / 3) / std, 0.0], [(4 - 7 / 3) / std, 0.0, 0.0]]
    assert masked_whiten(values, mask).tolist() == [
        pytest.approx(row, abs=1e-6) for row in expected
    ]
    mean = 7 / 3  # shift_mean=False keeps it: only the spread is scaled
    shifted = [
        [(1 - mean) / std + mean, (2 - mean) / std + mean, 0.0],
        [(4 - mean) / std + mean, 0.0, 0.0],
    ]
    assert masked_whiten(values, mask, shift_mean=False).tolist() == [
        pytest.approx(row, abs=1e-6) for row in shifted
    ]


def test_kl_estimators_match_hand_computed_values():
    """k1 = log p - log p_ref; k3 = (r - 1) - log r with r = p_ref / p, never negative."""
    logprobs = torch.log(torch.tensor([0.5, 0.25, 0.3]))
    ref_logprobs = torch.log(torch.tensor([0.25, 0.5, 0.3]))
    assert kl_per_token(logprobs, ref_logprobs, "k1").tolist() == pytest.approx(
        [math.log(2), -math.log(2), 0.0], abs=1e-6
    )
    assert kl_per_token(logprobs, ref_logprobs, "k3").tolist() == pytest.approx(
        [-0.5 + math.log(2), 1 - math.log(2), 0.0], abs=1e-6
    )
    with pytest.raises(ValueError, match="Unknown KL estimator 'k2'"):
        kl_per_token(logprobs, ref_logprobs, "k2")


def test_gae_matches_hand_computed_values_and_ends_the_episode_at_the_mask():
    """GAE with gamma 1 / lambda 0.95; after the last real token the value is 0 and rewards are ignored."""
    advantages, returns = compute_gae(
        torch.tensor([[0.0, 0.0, 1.0]]),
        torch.tensor([[0.5, 0.6, 0.7]]),
        torch.ones(1, 3),
        gamma=1.0,
        lam=0.95,
    )
    assert advantages.tolist()[0] == pytest.approx([0.46575, 0.385, 0.3])
    assert returns.tolist()[0] == pytest.approx([0.96575, 0.985, 1.0])

    # Position 2 lies past the end: its reward (5) and value (9) must not leak into the estimate.
    advantages, returns = compute_gae(
        torch.tensor([[0.0, 2.0, 5.0]]),
        torch.tensor([[1.0, 1.0, 9.0]]),
        torch.tensor([[1, 1, 0]]),
        gamma=0.9,
        lam=0.5,
    )
    assert advantages.tolist()[0] == pytest.approx([0.35, 1.0, 0.0])
    assert returns.tolist()[0] == pytest.approx([1.35, 2.0, 0.0])


def test_responses_are_cut_after_the_first_eos_and_rewarded_at_the_last_real_token():
    """Tokens after the first EOS become padding; the score lands on the EOS (or the last token)."""
    eos, pad = 1, 0
    responses = torch.tensor([[5, 1, 7, 1], [5, 6, 7, 8], [1, 9, 9, 9], [5, 0, 1, 3]])
    cut, mask, last_index, has_eos = truncate_after_stop(responses, [eos], pad)
    assert cut.tolist() == [[5, 1, 0, 0], [5, 6, 7, 8], [1, 0, 0, 0], [5, 0, 1, 0]]
    # A sampled pad id (row 3) is still a real token: the mask is positional.
    assert mask.int().tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 0]]
    assert last_index.tolist() == [1, 3, 0, 2]
    assert has_eos.tolist() == [True, False, True, True]

    kl = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    rewards, non_score = per_token_rewards(
        torch.tensor([2.0, -1.0]),
        kl,
        torch.tensor([[1, 1, 0], [1, 1, 1]]),
        torch.tensor([1, 2]),
        0.5,
    )
    assert non_score.tolist() == [
        pytest.approx([-0.05, -0.1, 0.0]),
        pytest.approx([-0.2, -0.25, -0.3]),
    ]
    assert rewards.tolist() == [
        pytest.approx([-0.05, 1.9, 0.0]),
        pytest.approx([-0.2, -0.25, -1.3]),
    ]


def test_clipped_policy_and_value_losses_match_hand_computed_values():
    """Ratios 1.4 / 0.7 / 1.1 with clip 0.2, value predictions clipped at 0.2; token 4 is masked."""
    old = math.log(0.5)
    pg_loss, vf_loss, stats = ppo_losses(
        new_logprobs=torch.log(torch.tensor([[0.7, 0.35, 0.55, 0.9]])),
        vpred=torch.tensor([[2.0, 1.1, 0.0, 50.0]]),
        mb_logprobs=torch.tensor([[old, old, old, old]]),
        mb_values=torch.tensor([[1.0, 1.0, 1.0, 1.0]]),
        mb_advantages=torch.tensor([[1.0, -1.0, 2.0, 100.0]]),
        mb_returns=torch.tensor([[3.0, 1.0, 0.0, 0.0]]),
        mb_mask=torch.tensor([[1, 1, 1, 0]]),
        cliprange=0.2,
        cliprange_value=0.2,
    )
    # Policy: max(-A r, -A clip(r)) = -1.2 (clipped), 0.8 (clipped), -2.2 (inside the range).
    assert pg_loss.item() == pytest.approx((-1.2 + 0.8 - 2.2) / 3)
    # Value: max((v - R)^2, (clip(v) - R)^2) = 3.24 (clipped), 0.01, 0.64 (clipped), halved.
    assert vf_loss.item() == pytest.approx(0.5 * (3.24 + 0.01 + 0.64) / 3)
    assert stats["pg_clipfrac"] == pytest.approx(2 / 3)
    assert stats["vf_clipfrac"] == pytest.approx(2 / 3)
    assert stats["ratio"] == pytest.approx((1.4 + 0.7 + 1.1) / 3)
    logs = [math.log(1.4), math.log(0.7), math.log(1.1)]
    assert stats["approxkl"] == pytest.approx(0.5 * sum(x * x for x in logs) / 3)
    assert (stats["pg_loss"], stats["vf_loss"]) == (pg_loss.item(), vf_loss.item())


def test_adaptive_kl_moves_beta_by_the_clipped_error_and_fixed_kl_does_not():
    """Beta grows by at most 20% * n/horizon when KL is above target and shrinks when below."""
    adaptive = KLController(0.1, target=6.0, horizon=10_000)
    adaptive.update(9.0, n_steps=1000)  # error 0.5 clipped to 0.2
    assert adaptive.beta == pytest.approx(0.102)
    adaptive.update(3.0, n_steps=1000)  # error -0.5 clipped to -0.2
    assert adaptive.beta == pytest.approx(0.102 * 0.98)
    fixed = KLController(0.1)
    fixed.update(100.0, n_steps=1000)
    assert fixed.beta == 0.1


def test_running_moments_combine_batches_exactly():
    """Two batches give the mean and population std of all five values."""
    moments = RunningMoments()
    moments.update(torch.tensor([1.0, 2.0, 3.0]))
    moments.update(torch.tensor([4.0, 5.0]))
    assert (moments.count, moments.mean, moments.std) == (
        5,
        pytest.approx(3.0),
        pytest.approx(math.sqrt(2)),
    )


def test_step_warnings_flag_negative_or_exploding_kl_and_collapsed_responses():
    """A KL clearly below 0, a KL above the threshold and identical responses each warn; noise does not."""
    quiet = dict(kl=0.5, texts=["a", "b", "c", "d"], kl_threshold=10.0)
    assert step_warnings(3, log_ratio_sums=torch.tensor([0.4, 0.6, 0.5, 0.5]), **quiet) == []
    # Mean -0.05 with a standard error of 0.5: sampling noise, not a mismatch.
    assert step_warnings(3, log_ratio_sums=torch.tensor([-0.5, 0.4, -0.6, 0.5]), **quiet) == []

    (negative,) = step_warnings(3, log_ratio_sums=torch.tensor([-1.0, -1.2, -0.8, -1.1]), **quiet)
    assert negative.startswith("step 3: the KL estimate is negative (-1.0250 ± 0.0740 nats)")
    (exploding,) = step_warnings(
        4, kl=12.0, log_ratio_sums=torch.tensor([12.0, 12.0]), texts=["a", "b"], kl_threshold=10.0
    )
    assert exploding.startswith("step 4: objective/kl is 12.00 nats, above 10.0")
    (collapsed,) = step_warnings(
        5, kl=0.5, log_ratio_sums=torch.tensor([0.5] * 3), texts=["same"] * 3, kl_threshold=10.0
    )
    assert collapsed.startswith("step 5: all 3 responses are the same text ('same')")
