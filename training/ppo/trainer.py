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
as `training.scoring` scores them. The settings are `training.ppo.config`, the math
`training.ppo.core`, the forward passes `training.ppo.modeling`. torch and transformers are
imported inside the functions that use them.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from training.checkpoints import CHECKPOINTS, PPO_STATE, checkpoints, last_checkpoint
from training.config import ConfigError
from training.formatting import FormatError, check_messages, truncate_left
from training.generation import PromptInput, encode_prompt, eos_token_ids
from training.ppo.config import PPOConfig, PPOResult
from training.ppo.core import (
    KLController,
    PromptSampler,
    RunningMoments,
    compute_gae,
    kl_per_token,
    lr_lambda,
    masked_mean,
    masked_whiten,
    normalize_scores,
    per_token_rewards,
    ppo_losses,
    step_warnings,
    truncate_after_stop,
)
from training.ppo.modeling import (
    PAD_TOKEN,
    disable_dropout,
    forward_logprobs,
    forward_values,
    ppo_generation_config,
    prepare_policy_tokenizer,
    resize_embeddings,
    value_head,
)
from training.trainer_utils import (
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

    from training.scoring import RewardScorer

ARBITER_FILE = "arbiter_ppo.json"

RewardFn = Callable[[list[PromptInput], list[str]], Sequence[float]]
OnStep = Callable[[int, int, dict[str, float], dict[str, Any]], None]
ShouldStop = Callable[[], bool]


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
        from transformers import set_seed

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
            torch.load(resume_dir / PPO_STATE, map_location="cpu", weights_only=True)
            if resume_dir
            else None
        )

        start_dir = resume_dir / "policy" if resume_dir else self.policy_dir
        self._load_tokenizer(start_dir, state, check_reference=reference_path is not None)
        self._load_models(start_dir, resume_dir, reward_fn)
        self._encode_prompts()
        self._make_optimizers()
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
            checkpoint_dir=last_checkpoint(self.output_dir, state_files=(PPO_STATE,)),
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

    def _load_tokenizer(self, start_dir: Path, state: dict[str, Any] | None, *, check_reference: bool) -> None:
        """Load the policy's tokenizer: left padding, a pad token distinct from EOS, a chat template."""
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(start_dir, local_files_only=True)
        base_vocab = AutoTokenizer.from_pretrained(
            self.policy_dir, local_files_only=True
        ).get_vocab()
        self.tokenizer_changes = (
            list(state["tokenizer_changes"]) if state else prepare_policy_tokenizer(tokenizer)
        )
        tokenizer.padding_side = "left"
        self.tokenizer = tokenizer
        self._check_same_vocab(base_vocab, self.reward_dir, "reward_model_path")
        if check_reference:
            self._check_same_vocab(base_vocab, self.reference_dir, "reference_path")

    def _load_models(self, start_dir: Path, resume_dir: Path | None, reward_fn: RewardFn | None) -> None:
        """Load the policy, the frozen reference, the value model (from the reward model) and the scorer."""
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

        from training.scoring import load_scorer

        tokenizer = self.tokenizer
        self.policy = self._load(AutoModelForCausalLM, start_dir)
        self.reference = self._load(AutoModelForCausalLM, self.reference_dir)
        self.value_model = self._load(
            AutoModelForSequenceClassification,
            resume_dir / "value" if resume_dir else self.reward_dir,
            num_labels=1,
        )
        value_head(self.value_model)  # refuse a reward model without a per-token score head
        self.reference.requires_grad_(False).eval()
        self.scorer: RewardScorer | None = None
        if reward_fn is None:
            self.scorer = load_scorer(self.reward_dir, device=str(self.device))
            self.scorer.model.requires_grad_(False)
        self.pad_id = tokenizer.pad_token_id
        self.stop_ids = sorted(eos_token_ids(tokenizer, self.policy) - {self.pad_id})

    def _encode_prompts(self) -> None:
        """Encode the prompts as generation renders them, cut from the front; refuse what cannot fit."""
        config, tokenizer = self.config, self.tokenizer
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

    def _make_optimizers(self) -> None:
        """Make the optimizers, learning-rate schedules and the state that a checkpoint restores."""
        import torch

        config = self.config
        self.total_steps = config.total_steps
        self.policy_optimizer = torch.optim.Adam(
            self.policy.parameters(), lr=config.learning_rate, eps=config.adam_eps
        )
        self.value_optimizer = torch.optim.Adam(
            self.value_model.parameters(), lr=config.learning_rate, eps=config.adam_eps
        )
        decay = lr_lambda(config.lr_decay, self.total_steps)
        self.policy_scheduler = torch.optim.lr_scheduler.LambdaLR(self.policy_optimizer, decay)
        self.value_scheduler = torch.optim.lr_scheduler.LambdaLR(self.value_optimizer, decay)
        self.sampler = PromptSampler(len(self.prompts), config.seed)
        self.kl_ctl = KLController(config.kl_coef, config.kl_target, config.kl_horizon)
        self.reward_moments = RunningMoments()
        self.global_step = 0
        self.log_history: list[dict[str, float]] = []
        self.warnings: list[str] = []
        self.samples: list[dict[str, Any]] = []

    def _load(self, auto_class: Any, path: Path, **kwargs: Any) -> nn.Module:
        import torch

        model = auto_class.from_pretrained(
            path, local_files_only=True, dtype=torch.float32, **kwargs
        )
        resize_embeddings(model, len(self.tokenizer))
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
            state_file=PPO_STATE,
            require_state=True,
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
        torch.save(state, partial / PPO_STATE)
        shutil.rmtree(path, ignore_errors=True)
        partial.rename(path)  # a checkpoint is complete or absent, never half written
        if self.config.save_total_limit is not None:
            for old in checkpoints(self.output_dir, state_files=(PPO_STATE,))[
                : -self.config.save_total_limit
            ]:
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


__all__ = [
    "ARBITER_FILE",
    "PPOTrainer",
    "model_card",
    "prompt_messages",
    "train_ppo",
    "train_ppo_run",
]

