"""The PPO trainer: prompts checked before anything loads, real runs on tiny models."""

import json
import math
import random
import re
import shutil

import pytest

pytestmark = pytest.mark.training
pytest.importorskip("transformers")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from training.formatting import FormatError  # noqa: E402
from training.generation import encode_prompt  # noqa: E402
from training.ppo.config import PPOConfig  # noqa: E402
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
