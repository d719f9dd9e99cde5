"""Train a policy on preference pairs with Direct Preference Optimization (TRL's DPOTrainer). No Django.

`train_dpo` reads top to bottom in phases:

1. check the pairs (TRL conversational preference rows, as `train_reward_model` takes them)
   and split off the held-out set (seeded),
2. load the policy, the frozen reference (the policy's starting point unless another folder is
   given) and the tokenizer from local folders (never a hub),
3. tokenize each pair the way the policy is later sampled (`training.generation.prompt_text`)
   and apply the length policy *before* TRL sees the data, counting every prompt cut, every
   reply cut and every pair dropped: TRL's own collator would cut the replies' ends silently,
4. train with TRL's `DPOTrainer`, calling `on_step` with metrics, polling `should_stop`,
   checkpointing every `save_steps`,
5. evaluate the held-out pairs: implicit reward accuracy (share of pairs with
   beta*log(pi/pi_ref)(chosen) > the same for rejected) and mean margin, over every pair,
6. save the policy (safetensors), tokenizer, `arbiter_dpo.json` and a model card.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from training.checkpoints import CHECKPOINTS
from training.config import (
    ConfigError,
    TrainerRunConfig,
    choices,
)
from training.trainer_utils import (
    DatasetError,
    TrainerResult,
    card_metric_table,
    card_pairs,
    card_provenance,
    check_preference_rows,
    fingerprint,
    prepare_output_dir,
    resolve_model_dir,
    save_artifacts,
    train_and_evaluate,
    trainer_arguments,
)

LOSS_TYPES = ("sigmoid", "ipo", "hinge", "sigmoid_norm")
ARBITER_FILE = "arbiter_dpo.json"
# The held-out metrics, averaged over every pair (see ArbiterDPOTrainer).
PAIR_METRICS = ("rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected")


@dataclass
class DPOConfig(TrainerRunConfig):
    """Settings of one DPO run (TRL's `DPOTrainer`; loss `-logsigmoid(beta * margin)` by default)."""

    learning_rate: float = 1e-6
    """Peak AdamW learning rate; 5e-7 to 5e-6 suits pretrained policies, 1e-3 tiny ones."""

    per_device_train_batch_size: int = 4
    per_device_eval_batch_size: int = 8

    max_length: int = 1024

    truncation: str = "truncate_left"
    """What to do with a pair over a limit: `"truncate_left"` cuts the prompt from the front
    (its oldest turns) to `max_prompt_length`, then cuts the replies' ends to fit `max_length`;
    `"drop"` leaves the pair out. Every cut and drop is counted in the result and the model
    card, never silent."""

    beta: float = 0.1
    """Strength of the pull towards the reference policy: higher keeps the policy closer to it.
    0.1 is the usual value; for `loss_type="ipo"` it is the regularizer tau."""

    loss_type: str = "sigmoid"
    """`"sigmoid"` (DPO), `"ipo"`, `"hinge"` (SLiC) or `"sigmoid_norm"` (DPO on the per-token
    mean log-ratio, less biased towards long replies)."""

    max_prompt_length: int = 512
    """Most tokens of the prompt (the conversation before the replies); longer prompts follow
    `truncation`. Must be below `max_length`, which leaves the replies at least the rest."""

    INT_FIELDS: ClassVar[tuple[str, ...]] = (*TrainerRunConfig.INT_FIELDS, "max_prompt_length")
    NUMBER_FIELDS: ClassVar[tuple[str, ...]] = ("beta", *TrainerRunConfig.NUMBER_FIELDS)
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "loss_type": LOSS_TYPES,
        **TrainerRunConfig.CHOICES,
    }

    def __post_init__(self) -> None:
        self.check_types()
        if not self.beta > 0:
            raise ConfigError(
                "beta",
                f"`beta` must be > 0, got {self.beta}. Use 0.1 (the usual value); higher keeps the policy "
                "closer to the reference.",
            )
        if self.loss_type not in LOSS_TYPES:
            raise ConfigError(
                "loss_type",
                f"`loss_type` must be one of {choices(LOSS_TYPES)}, got {self.loss_type!r}. Use 'sigmoid' for DPO.",
            )
        self.check_learning_rate("1e-6 (pretrained policies)")
        self.check_schedule(
            (
                "per_device_train_batch_size",
                "per_device_eval_batch_size",
                "gradient_accumulation_steps",
                "max_prompt_length",
                "logging_steps",
                "save_steps",
            )
        )
        self.check_max_length("policy")
        if self.max_prompt_length >= self.max_length:
            raise ConfigError(
                "max_prompt_length",
                f"`max_prompt_length` ({self.max_prompt_length}) must be below `max_length` ({self.max_length}), "
                "so that the replies keep some room. Half of `max_length` is a usual choice.",
            )
        self.check_truncation(
            "Use 'truncate_left' to cut long prompts from the front, or 'drop' to leave long pairs out."
        )
        self.check_held_out()
        self.check_mixed_precision()


@dataclass(frozen=True)
class DPOLengthReport:
    """What the length policy did to one split."""

    policy: str
    max_length: int
    max_prompt_length: int
    pairs: int
    kept: int
    prompt_truncated: int  # pairs whose prompt was cut from the front
    reply_truncated: int  # pairs whose replies were cut at the end
    dropped: int
    longest: int  # tokens of the longest prompt + reply before the policy


@dataclass
class DPOResult(TrainerResult[DPOLengthReport]):
    """The outcome of `train_dpo`."""


def train_dpo(
    config: DPOConfig,
    *,
    dataset: Sequence[dict[str, Any]],
    policy_path: str | Path,
    reference_path: str | Path | None = None,
    model_roots: Iterable[str | Path] | None = None,
    dataset_hash: str = "",
    on_step: Any = None,
    should_stop: Any = None,
    resume_from_checkpoint: bool | str | Path | None = None,
) -> DPOResult:
    """Fine-tune the causal LM at `policy_path` on `dataset` with DPO and save it.

    Rows are `{"prompt": [messages], "chosen": [messages], "rejected": [messages]}`; without
    `prompt`, chosen and rejected are whole conversations whose shared opening turns become the
    prompt. A `margin` key is accepted and ignored. The reference policy is `reference_path`,
    or the policy as loaded. `on_step(step, total_steps, metrics)` is called at every logging
    step with the training metrics (loss, rewards/accuracies, rewards/margins, ...) and after
    each evaluation with the `eval_*` metrics. `should_stop()` is polled after every optimizer
    step; when it returns True a checkpoint is saved and the result has status "stopped". A
    later call with the same config, data and models and `resume_from_checkpoint=True` (the
    latest checkpoint) or a checkpoint path continues from that step with the same data order.
    """
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import DPOConfig as TRLDPOConfig

    from training.formatting import prepare_tokenizer
    from training.reward import ProgressCallback, split_held_out

    output_dir = Path(config.output_dir)
    checkpoint_root = output_dir / CHECKPOINTS

    # 1. Pairs and held-out split ------------------------------------------------------------
    pairs = check_dpo_pairs(dataset)
    train_pairs, eval_pairs = split_held_out(pairs, config.eval_fraction, config.seed)

    # 2. Policy, reference and tokenizer (local folders only) --------------------------------
    policy_dir = resolve_model_dir(policy_path, model_roots)
    reference_dir = (
        resolve_model_dir(reference_path, model_roots) if reference_path is not None else policy_dir
    )
    identity = {
        "config": config.to_dict(),
        "data": fingerprint([asdict(p) for p in pairs]),
        "policy": str(policy_dir),
        "reference": str(reference_dir),
    }
    resume_path = prepare_output_dir(
        output_dir, identity, resume_from_checkpoint, same="config, dataset and models"
    )
    set_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(policy_dir, local_files_only=True)
    tokenizer_changes = prepare_tokenizer(tokenizer)
    policy = AutoModelForCausalLM.from_pretrained(
        policy_dir, local_files_only=True, dtype=torch.float32
    )
    reference = AutoModelForCausalLM.from_pretrained(
        reference_dir, local_files_only=True, dtype=torch.float32
    )
    if reference.config.vocab_size != policy.config.vocab_size:
        raise ValueError(
            f"The reference model {reference_dir} has a vocabulary of {reference.config.vocab_size} tokens and the "
            f"policy {policy_dir} one of {policy.config.vocab_size}: they must share the tokenizer. Leave "
            "reference_path unset to use the policy's starting point."
        )
    limit = getattr(policy.config, "max_position_embeddings", None)
    if limit is not None and config.max_length > limit:
        raise ValueError(
            f"`max_length` ({config.max_length}) exceeds the policy's position limit "
            f"(max_position_embeddings={limit}). Set max_length to {limit} or less."
        )

    # 3. Tokenize and apply the length policy ------------------------------------------------
    train_rows, train_length = encode_dpo_pairs(train_pairs, tokenizer, config)
    eval_rows, eval_length = encode_dpo_pairs(eval_pairs, tokenizer, config)
    if not train_rows:
        raise DatasetError(
            f"All {len(train_pairs)} training pairs exceed max_length={config.max_length} or "
            f"max_prompt_length={config.max_prompt_length} tokens and were dropped. Raise the limits or use "
            "truncation='truncate_left'."
        )

    # 4. Train, then 5. the final held-out evaluation (unless the last step just ran one) ----
    progress = ProgressCallback(on_step, should_stop)
    trainer = _trainer_class()(
        model=policy,
        ref_model=reference,
        args=TRLDPOConfig(
            **trainer_arguments(config, checkpoint_root, has_eval=bool(eval_rows)),
            beta=config.beta,
            loss_type=[config.loss_type],
        ),
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        callbacks=[progress],
    )
    result = train_and_evaluate(
        trainer,
        progress,
        DPOResult,
        resume_path=resume_path,
        output_dir=output_dir,
        counts={
            "pairs": len(pairs),
            "train_pairs": len(train_rows),
            "eval_pairs": len(eval_rows),
            "prompt_truncated": train_length.prompt_truncated + eval_length.prompt_truncated,
            "reply_truncated": train_length.reply_truncated + eval_length.reply_truncated,
            "dropped": train_length.dropped + eval_length.dropped,
        },
        length={"train": train_length, "eval": eval_length},
        tokenizer_changes=tokenizer_changes,
    )
    if progress.stopped:
        return result

    # 6. Artifacts ---------------------------------------------------------------------------
    save_artifacts(
        trainer,
        result,
        output_dir=output_dir,
        summary={
            "policy_path": str(policy_dir),
            "reference_path": str(reference_dir),
            "dataset_hash": dataset_hash,
            "config": config.to_dict(),
        },
        summary_file=ARBITER_FILE,
        model_card=model_card,
    )
    return result


@dataclass(frozen=True)
class DPOPair:
    """One preference: the conversation so far and two candidate continuations."""

    prompt: list[dict[str, str]]
    chosen: list[dict[str, str]]
    rejected: list[dict[str, str]]


def check_dpo_pairs(dataset: Sequence[dict[str, Any]]) -> list[DPOPair]:
    """Return the rows as pairs, or raise DatasetError naming the first bad row and field.

    Without a `prompt`, the turns chosen and rejected share at their start become the prompt.
    """
    pairs = []
    for i, (_, prompt, chosen, rejected) in enumerate(
        check_preference_rows(dataset, trainer="DPO")
    ):
        if not prompt:
            shared = 0
            while (
                shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]
            ):
                shared += 1
            prompt, chosen, rejected = chosen[:shared], chosen[shared:], rejected[shared:]
        if not prompt:
            raise DatasetError(
                f"row {i}: prompt: DPO needs the conversation the replies answer. Give a 'prompt', or chosen and "
                "rejected conversations that share their opening turns."
            )
        pairs.append(DPOPair(prompt, chosen, rejected))
    return pairs


def encode_dpo_pairs(
    pairs: Sequence[DPOPair], tokenizer: Any, config: DPOConfig
) -> tuple[list[dict[str, list[int]]], DPOLengthReport]:
    """Tokenize pairs into TRL's processed form (prompt/chosen/rejected ids), applying the length policy.

    The prompt is rendered as the policy is sampled (`prompt_text`); each reply is what the
    full conversation adds after it, ending with EOS (appended when the chat template does not
    end the turn with it), so the policy learns to stop.
    """
    from training.formatting import encode, truncate_left
    from training.generation import encode_prompt

    eos = tokenizer.eos_token_id
    special = frozenset(tokenizer.all_special_ids)
    rows: list[dict[str, list[int]]] = []
    prompt_cut = reply_cut = dropped = longest = 0
    for pair in pairs:
        prompt_ids = encode_prompt(tokenizer, pair.prompt)
        fulls = [
            encode(tokenizer, tokenizer.apply_chat_template(pair.prompt + reply, tokenize=False))
            for reply in (pair.chosen, pair.rejected)
        ]
        # The reply starts where prompt and conversation diverge (templates may render a prompt
        # alone differently, and tokens can merge across the boundary), as in TRL.
        shared = min(_common_prefix(prompt_ids, full) for full in fulls)
        prompt_ids = prompt_ids[:shared]
        chosen_ids, rejected_ids = (
            full[shared:] + ([eos] if eos not in full[shared:] else []) for full in fulls
        )
        longest = max(longest, len(prompt_ids) + max(len(chosen_ids), len(rejected_ids)))
        too_long_prompt = len(prompt_ids) > config.max_prompt_length
        if config.truncation == "drop":
            if (
                too_long_prompt
                or len(prompt_ids) + max(len(chosen_ids), len(rejected_ids)) > config.max_length
            ):
                dropped += 1
                continue
        else:
            if too_long_prompt:
                prompt_cut += 1
                prompt_ids = truncate_left(prompt_ids, config.max_prompt_length, special)
            room = config.max_length - len(prompt_ids)
            if max(len(chosen_ids), len(rejected_ids)) > room:
                reply_cut += 1
                chosen_ids, rejected_ids = chosen_ids[:room], rejected_ids[:room]
        rows.append(
            {"prompt_ids": prompt_ids, "chosen_ids": chosen_ids, "rejected_ids": rejected_ids}
        )
    report = DPOLengthReport(
        policy=config.truncation,
        max_length=config.max_length,
        max_prompt_length=config.max_prompt_length,
        pairs=len(pairs),
        kept=len(rows),
        prompt_truncated=prompt_cut,
        reply_truncated=reply_cut,
        dropped=dropped,
        longest=longest,
    )
    return rows, report


def model_card(summary: dict[str, Any]) -> str:
    """Render the README.md saved with a DPO-trained policy."""
    config = summary["config"]
    length = summary["length"]
    losses = {
        "sigmoid": "-logsigmoid(beta * margin)",
        "ipo": "(margin_per_token - 1 / (2 * beta))^2",
        "hinge": "relu(1 - beta * margin)",
        "sigmoid_norm": "-logsigmoid(beta * margin_per_token)",
    }
    policy = (
        "prompts cut from the front (oldest turns first), then replies cut at the end"
        if config["truncation"] == "truncate_left"
        else "pairs left out of training"
    )
    reference = (
        "the policy's starting point"
        if summary["reference_path"] == summary["policy_path"]
        else f"`{summary['reference_path']}`"
    )
    return f"""---
library_name: transformers
pipeline_tag: text-generation
tags: [arbiter, dpo, trl]
---

# Policy trained with DPO

Trained by Arbiter with TRL's `DPOTrainer` from the local policy `{summary["policy_path"]}`,
reference policy {reference}. Loss `{config["loss_type"]}`: `{losses[config["loss_type"]]}`, where
margin = log(pi/pi_ref)(chosen) - log(pi/pi_ref)(rejected), beta = {config["beta"]}.

## Data

{card_pairs(summary)}
- length policy `{config["truncation"]}` at {config["max_length"]} tokens (prompt at most {config["max_prompt_length"]}): {policy}.
  Train: {length["train"]["prompt_truncated"]} prompts cut, {length["train"]["reply_truncated"]} replies cut, {length["train"]["dropped"]} dropped of {length["train"]["pairs"]};
  held out: {length["eval"]["prompt_truncated"]} prompts cut, {length["eval"]["reply_truncated"]} replies cut, {length["eval"]["dropped"]} dropped of {length["eval"]["pairs"]}.

## Final metrics (held out: rewards/accuracies = share of pairs whose chosen reply gets the higher implicit reward)

{card_metric_table(summary["metrics"])}

## Config

```json
{json.dumps(config, indent=2)}
```

## Use

Prompts are rendered with the saved chat template up to where the assistant's reply starts
(`training.generation.prompt_text`); replies end with the EOS token.
`training.generation.generate_responses(prompts, [path], k=..., max_new_tokens=..., temperature=...)`
samples from it.

{card_provenance(summary)}; {summary["global_step"]} optimizer steps.
"""


# -- helpers ------------------------------------------------------------------------------------


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


_TRAINER_CLASS: type | None = None


def _trainer_class() -> type:
    """Return ArbiterDPOTrainer, defined on first use so that importing this module needs no TRL."""
    global _TRAINER_CLASS
    if _TRAINER_CLASS is not None:
        return _TRAINER_CLASS
    from trl import DPOTrainer

    class ArbiterDPOTrainer(DPOTrainer):
        """TRL's DPOTrainer on pre-tokenized pairs, with held-out metrics over every pair and no telemetry.

        TRL averages the eval reward accuracy and margins per batch, which is off when the last
        batch is short; here each batch mean is weighted by its number of pairs.
        """

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._eval_batches: list[tuple[int, dict[str, float]]] = []
            super().__init__(*args, **kwargs)

        def _send_telemetry(self) -> None:
            # Arbiter makes no network calls at run time beyond its configured services.
            return None

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            # Rows arrive tokenized, with the length policy applied (encode_dpo_pairs).
            if "prompt_ids" in dataset.column_names:
                return dataset
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

        def _compute_loss(self, model, inputs, return_outputs):
            out = super()._compute_loss(model, inputs, return_outputs)
            if not self.model.training:
                batch = self._metrics["eval"]
                self._eval_batches.append(
                    (inputs["input_ids"].shape[0] // 2, {k: batch[k][-1] for k in PAIR_METRICS})
                )
            return out

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if not self.model.training and self._eval_batches:
                total = sum(n for n, _ in self._eval_batches)
                for key in PAIR_METRICS:
                    self._metrics["eval"][key] = [
                        sum(n * m[key] for n, m in self._eval_batches) / total
                    ]
                self._eval_batches = []
            super().log(logs, start_time)

    _TRAINER_CLASS = ArbiterDPOTrainer
    return ArbiterDPOTrainer


def train_dpo_run(
    config: DPOConfig,
    *,
    dataset: Sequence[dict[str, Any]],
    base_model_path: str | Path,
    model_roots: Iterable[str | Path] | None = None,
    dataset_hash: str = "",
    on_step: Any = None,
    should_stop: Any = None,
    resume_from_checkpoint: bool | str | Path | None = None,
) -> DPOResult:
    """Run `train_dpo` under the training runs' calling convention (`training.runner`).

    A run's base model is the policy; the reference is the policy as it starts.
    """
    return train_dpo(
        config,
        dataset=dataset,
        policy_path=base_model_path,
        model_roots=model_roots,
        dataset_hash=dataset_hash,
        on_step=on_step,
        should_stop=should_stop,
        resume_from_checkpoint=resume_from_checkpoint,
    )


__all__ = [
    "DPOConfig",
    "DPOLengthReport",
    "DPOPair",
    "DPOResult",
    "DatasetError",
    "LOSS_TYPES",
    "check_dpo_pairs",
    "encode_dpo_pairs",
    "model_card",
    "train_dpo",
    "train_dpo_run",
]
