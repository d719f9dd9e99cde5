"""PPO: the pure helpers against hand-computed values, config errors, real runs on tiny models."""

import json
import math
import random
import re
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.training
pytest.importorskip("transformers")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from training.config import ConfigError  # noqa: E402
from training.formatting import FormatError  # noqa: E402
from training.generation import encode_prompt  # noqa: E402
from training.ppo.config import PPOConfig  # noqa: E402
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
from training.ppo.modeling import forward_logprobs, ppo_generation_config  # noqa: E402
from training.ppo.trainer import PPOTrainer, train_ppo  # noqa: E402
from training.scoring import load_scorer  # noqa: E402

PROMPTS = [
    "Where is the red box?",
    [{"role": "user", "content": "Who likes a green apple?"}],
    "Can you help me find the old map?",
    [
        {"role": "system", "content": "Please answer."},
        {"role": "user", "content": "Why does the cat want some water?"},
    ],
]


def small_config(tmp_path, name="run", **overrides):
    values = dict(
        output_dir=str(tmp_path / name),
        learning_rate=3e-3,
        num_steps=3,
        batch_size=8,
        mini_batch_size=4,
        gradient_accumulation_steps=2,
        num_ppo_epochs=2,
        response_length=6,
        temperature=0.7,
        save_steps=100,
        sample_steps=2,
        sample_rows=4,
        seed=0,
    )
    values.update(overrides)
    return PPOConfig(**values)


# -- pure helpers -------------------------------------------------------------------------------


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


# -- config -------------------------------------------------------------------------------------


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


def test_bad_prompts_are_refused_naming_the_prompt(tmp_path):
    """Empty prompt lists, empty strings and prompts ending with the assistant are refused."""
    config = small_config(tmp_path)
    paths = {"policy_path": tmp_path / "none", "reward_model_path": tmp_path / "none"}
    with pytest.raises(
        FormatError, match=re.escape("prompts: must be a non-empty list of prompts")
    ):
        PPOTrainer(config, prompts=[], **paths)
    with pytest.raises(FormatError, match=re.escape("prompts[1]: is an empty string")):
        PPOTrainer(config, prompts=["Hello?", "  "], **paths)
    ends_with_reply = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    with pytest.raises(FormatError, match=re.escape("prompts[0]: ends with an assistant message")):
        PPOTrainer(config, prompts=[ends_with_reply], **paths)
    with pytest.raises(
        FormatError, match=re.escape("prompts[0][0]: role must be one of system, user, assistant")
    ):
        PPOTrainer(config, prompts=[[{"role": "bot", "content": "Hi"}]], **paths)


# -- real runs on tiny models ---------------------------------------------------------------------


def test_log_probs_are_recomputed_at_the_sampling_temperature(tiny_models):
    """A forward pass at temperature T gives the log-probs the sampler drew the tokens with."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models.causal_lm, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(tiny_models.causal_lm).eval()
    batch = tokenizer(
        ["User: Where is the red box?", "Who likes a green apple? Assistant:"],
        return_tensors="pt",
        padding=True,
    )
    torch.manual_seed(0)
    temperature = 0.7
    with torch.no_grad():
        out = model.generate(
            **batch,
            generation_config=ppo_generation_config(
                temperature=temperature,
                response_length=5,
                stop_ids=[],
                pad_id=tokenizer.pad_token_id,
            ),
            use_model_defaults=False,
            output_scores=True,
            return_dict_in_generate=True,
        )
        context = batch["input_ids"].shape[1]
        sampled = out.sequences[:, context:]
        from_sampler = torch.stack(
            [
                torch.log_softmax(s, -1).gather(-1, sampled[:, i : i + 1]).squeeze(-1)
                for i, s in enumerate(out.scores)
            ],
            dim=1,
        )
        mask = torch.cat([batch["attention_mask"], torch.ones_like(sampled)], dim=1)
        recomputed, entropy = forward_logprobs(model, out.sequences, mask, context, temperature)
    assert torch.allclose(recomputed, from_sampler, atol=1e-4)
    assert not torch.allclose(
        recomputed, forward_logprobs(model, out.sequences, mask, context, 1.0)[0], atol=1e-3
    )
    assert bool((entropy > 0).all())


def test_three_steps_train_the_policy_and_leave_the_reference_alone(tiny_models, tmp_path):
    """Three steps: finite losses, policy and value weights move, the reference stays as loaded,
    metrics carry the usual names, sample tables hold the reward model's own scores, and the
    policy is saved with its tokenizer, summary and card."""
    policy_before = load_file(tiny_models.causal_lm / "model.safetensors")
    value_before = load_file(tiny_models.reward_base / "model.safetensors")
    calls = []
    trainer = PPOTrainer(
        small_config(tmp_path),
        prompts=PROMPTS,
        policy_path=tiny_models.causal_lm,
        reward_model_path=tiny_models.reward_base,
    )
    result = trainer.train(on_step=lambda *args: calls.append(args))

    assert result.status == "completed" and (result.global_step, result.total_steps) == (3, 3)
    # The policy reads each prompt as generation renders it (the text it is later sampled on).
    assert trainer.prompt_ids == [encode_prompt(trainer.tokenizer, p) for p in PROMPTS]
    assert [c[:2] for c in calls] == [(1, 3), (2, 3), (3, 3)]
    for _, _, metrics, _ in calls:
        assert all(math.isfinite(v) for v in metrics.values())
    names = {
        "objective/scores", "objective/rlhf_reward", "objective/kl", "objective/entropy",
        "objective/non_score_reward", "policy/clipfrac_avg", "policy/approxkl_avg",
        "val/clipfrac_avg", "val/ratio", "val/ratio_var", "loss/policy_avg", "loss/value_avg",
        "val/num_eos_tokens", "eos_rate", "response_length", "lr", "beta",
    }  # fmt: skip
    assert names <= set(calls[0][2])
    assert calls[0][2]["objective/kl"] == 0.0  # the policy starts as the reference
    assert calls[2][2]["objective/kl"] != 0.0
    assert calls[0][2]["lr"] == pytest.approx(3e-3) and calls[2][2]["lr"] == pytest.approx(1e-3)
    assert 0.0 < calls[0][2]["response_length"] <= 6

    policy_after = {k: v.cpu() for k, v in trainer.policy.state_dict().items()}
    assert (
        sum(not torch.equal(policy_before[k], policy_after[k]) for k in policy_before)
        > len(policy_before) // 2
    )
    value_after = {k: v.cpu() for k, v in trainer.value_model.state_dict().items()}
    assert not torch.equal(value_before["score.weight"], value_after["score.weight"])
    reference = {k: v.cpu() for k, v in trainer.reference.state_dict().items()}
    assert all(torch.equal(policy_before[k], reference[k]) for k in policy_before)
    assert not any(p.requires_grad for p in trainer.reference.parameters())

    # Sample tables at step 1 and every 2 steps; the scores are the reward model's, read the
    # way training.scoring reads a (prompt, reply) pair.
    tables = [details["samples"] for _, _, _, details in calls]
    assert tables[0] is not None and tables[1] is not None and tables[2] is None
    assert [set(row) for row in tables[0]] == [{"prompt", "response", "score"}] * 4
    scorer = load_scorer(tiny_models.reward_base)
    prompts_by_text = {p if isinstance(p, str) else p[-1]["content"]: p for p in PROMPTS}
    pairs = [
        ([{"role": "user", "content": p}] if isinstance(p, str) else p, row["response"])
        for row in tables[0]
        for p in [prompts_by_text[row["prompt"]]]
    ]
    assert [row["score"] for row in tables[0]] == pytest.approx(scorer.score(pairs), abs=1e-5)

    model_dir = result.artifact_dir
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "tokenizer.json").is_file()
    summary = json.loads((model_dir / "arbiter_ppo.json").read_text())
    assert summary["global_step"] == 3 and summary["episodes"] == 24 and summary["prompts"] == 4
    assert summary["config"]["kl_estimator"] == "k1" and len(summary["log_history"]) == 3
    card = (model_dir / "README.md").read_text()
    assert "pipeline_tag: text-generation" in card and "| objective/kl |" in card
    saved = load_file(model_dir / "model.safetensors")
    assert all(torch.equal(saved[k], policy_after[k]) for k in saved)


def test_a_tokenizer_whose_pad_is_eos_gets_a_distinct_pad_token(tiny_models, tmp_path):
    """A pad token equal to EOS is replaced by an added one; every model's embeddings grow."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dirs = {}
    for name, source in (("policy", tiny_models.causal_lm), ("rm", tiny_models.reward_base)):
        dirs[name] = tmp_path / name
        shutil.copytree(source, dirs[name])
        tokenizer = AutoTokenizer.from_pretrained(dirs[name])
        tokenizer.pad_token = tokenizer.eos_token
        tokenizer.save_pretrained(dirs[name])
    vocab = len(AutoTokenizer.from_pretrained(dirs["policy"]))

    result = train_ppo(
        small_config(tmp_path, num_steps=1, batch_size=4, mini_batch_size=4),
        prompts=PROMPTS,
        policy_path=dirs["policy"],
        reward_model_path=dirs["rm"],
    )
    assert result.status == "completed"
    assert result.tokenizer_changes == ["pad_token '<|pad|>' added (distinct from the EOS token)"]
    tokenizer = AutoTokenizer.from_pretrained(result.artifact_dir)
    assert tokenizer.pad_token == "<|pad|>" and tokenizer.pad_token_id != tokenizer.eos_token_id
    model = AutoModelForCausalLM.from_pretrained(result.artifact_dir)
    assert model.get_input_embeddings().weight.shape[0] == vocab + 1 == len(tokenizer)


def test_a_toy_reward_is_learned_while_kl_stays_bounded(tiny_models, tmp_path):
    """Rewarding each occurrence of the token "e" raises the mean score by half within 20 steps,
    while the KL to the reference stays a few nats."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models.causal_lm)
    assert tokenizer.convert_tokens_to_ids("e") != tokenizer.unk_token_id  # a real token

    result = train_ppo(
        small_config(
            tmp_path,
            learning_rate=1e-2,
            num_steps=20,
            batch_size=16,
            mini_batch_size=16,
            gradient_accumulation_steps=1,
            num_ppo_epochs=2,
            temperature=1.0,
            kl_coef=0.2,
            missing_eos_penalty=None,
            sample_steps=None,
        ),
        prompts=PROMPTS,
        policy_path=tiny_models.causal_lm,
        reward_model_path=tiny_models.reward_base,
        reward_fn=lambda prompts, responses: [float(r.count("e")) for r in responses],
    )
    scores = [entry["objective/scores"] for entry in result.log_history]
    kls = [entry["objective/kl"] for entry in result.log_history]
    first, last = sum(scores[:5]) / 5, sum(scores[-5:]) / 5
    assert last > 1.5 * first, scores
    assert all(math.isfinite(kl) for kl in kls) and max(kls) < 10.0, kls


def test_resume_continues_on_exactly_the_same_trajectory(tiny_models, tmp_path):
    """Four steps straight equal two steps, a stop, and two resumed steps (same seed): same
    metrics and the same final policy; resuming with a changed config is refused."""
    overrides = dict(
        num_steps=4,
        reward_normalization="running",
        reward_clip=5.0,
        kl_target=0.5,
        kl_horizon=100,
        whiten_rewards=True,
        kl_estimator="k3",
    )
    paths = {"policy_path": tiny_models.causal_lm, "reward_model_path": tiny_models.reward_base}
    straight = train_ppo(small_config(tmp_path, "straight", **overrides), prompts=PROMPTS, **paths)

    config = small_config(tmp_path, "resumed", **overrides)
    steps = []
    first = train_ppo(
        config,
        prompts=PROMPTS,
        on_step=lambda step, *_: steps.append(step),
        should_stop=lambda: len(steps) == 2,
        **paths,
    )
    assert (first.status, first.global_step, first.artifact_dir) == ("stopped", 2, None)
    assert first.checkpoint_dir.name == "checkpoint-2"
    with pytest.raises(ValueError, match=re.escape("already holds checkpoints of an earlier run")):
        train_ppo(config, prompts=PROMPTS, **paths)
    changed = small_config(tmp_path, "resumed", **{**overrides, "kl_coef": 0.2})
    with pytest.raises(ValueError, match=re.escape("Cannot resume: the config differ(s)")):
        train_ppo(changed, prompts=PROMPTS, resume_from_checkpoint=True, **paths)

    # A resumed run starts in a new process, with other random states.
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    resumed = train_ppo(config, prompts=PROMPTS, resume_from_checkpoint=True, **paths)
    assert (resumed.status, resumed.global_step) == ("completed", 4)
    assert len(resumed.log_history) == 4
    for a, b in zip(straight.log_history, resumed.log_history, strict=True):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6)
    final_straight = load_file(straight.artifact_dir / "model.safetensors")
    final_resumed = load_file(resumed.artifact_dir / "model.safetensors")
    assert final_straight.keys() == final_resumed.keys()
    for key in final_straight:
        assert torch.allclose(final_straight[key], final_resumed[key], atol=1e-6), key
