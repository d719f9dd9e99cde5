"""Train a reward model on preference pairs with TRL's RewardTrainer. No Django here.

`train_reward_model` reads top to bottom in phases:

1. check the pairs and split off the held-out set (seeded),
2. load the base model and tokenizer from a local folder (never a hub),
3. tokenize and apply the length policy *before* TRL sees the data, counting every pair that
   was truncated (from the front) or dropped: TRL itself would silently drop long pairs,
4. train with TRL's `RewardTrainer` (Bradley–Terry loss, optional margin and centering),
   calling `on_step` with metrics, polling `should_stop`, checkpointing every `save_steps`,
5. evaluate the held-out pairs exactly (accuracy = share with r_chosen > r_rejected, mean margin),
6. save the model (safetensors), tokenizer, `arbiter_reward.json` and a model card.

The Celery task (later) passes an `on_step` that records and publishes metrics, and a
`should_stop` that reads the run's cancel flag.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from datasets import Dataset
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    TrainerCallback,
    set_seed,
)
from trl import RewardConfig, RewardTrainer

from training.checkpoints import CHECKPOINTS
from training.config import RewardModelConfig
from training.formatting import (
    appends_eos,
    conversation_text,
    encode,
    prepare_tokenizer,
    truncate_left,
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

T = TypeVar("T")
OnStep = Callable[[int, int, dict[str, float]], None]
ShouldStop = Callable[[], bool]

ARBITER_FILE = "arbiter_reward.json"


@dataclass(frozen=True)
class Pair:
    """One preference: a shared conversation and two candidate final turns."""

    prompt: list[dict[str, str]]
    chosen: list[dict[str, str]]
    rejected: list[dict[str, str]]
    margin: float | None = None


@dataclass(frozen=True)
class LengthReport:
    """What the length policy did to one split."""

    policy: str
    max_length: int
    pairs: int
    kept: int
    truncated: int
    dropped: int
    longest: int  # tokens of the longest conversation before the policy


@dataclass
class TrainResult(TrainerResult[LengthReport]):
    """The outcome of `train_reward_model`."""


def train_reward_model(
    config: RewardModelConfig,
    *,
    dataset: Sequence[dict[str, Any]],
    base_model_path: str | Path,
    model_roots: Iterable[str | Path] | None = None,
    dataset_hash: str = "",
    on_step: OnStep | None = None,
    should_stop: ShouldStop | None = None,
    resume_from_checkpoint: bool | str | Path | None = None,
) -> TrainResult:
    """Train a reward model on `dataset` (TRL conversational preference rows) and save it.

    Rows are `{"prompt": [messages], "chosen": [messages], "rejected": [messages]}` with an
    optional numeric `margin`; without `prompt`, chosen/rejected are whole conversations.
    `on_step(step, total_steps, metrics)` is called at every logging step with the training
    metrics (loss, accuracy, margin, learning_rate, epoch, ...) and after each evaluation with
    the `eval_*` metrics. `should_stop()` is polled after every optimizer step; when it returns
    True a checkpoint is saved and the result has status "stopped". A later call with the same
    config and dataset and `resume_from_checkpoint=True` (the latest checkpoint) or a
    checkpoint path continues from that step with the same data order.
    """
    output_dir = Path(config.output_dir)
    checkpoint_root = output_dir / CHECKPOINTS

    # 1. Pairs and held-out split ------------------------------------------------------------
    pairs = _check_pairs(dataset, use_margin=config.use_margin)
    train_pairs, eval_pairs = split_held_out(pairs, config.eval_fraction, config.seed)

    # 2. Base model and tokenizer (local folders only) ---------------------------------------
    model_dir = resolve_model_dir(base_model_path, model_roots)
    resume_path = prepare_output_dir(
        output_dir,
        {"config": config.to_dict(), "data": fingerprint([asdict(p) for p in pairs])},
        resume_from_checkpoint,
        same="config and dataset",
    )
    set_seed(config.seed)  # the reward head is initialized when the model loads
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    tokenizer_changes = prepare_tokenizer(tokenizer)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=1, local_files_only=True, dtype=torch.float32
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    _drop_use_cache_for_encoders(model)
    model.config.id2label, model.config.label2id = {0: "reward"}, {"reward": 0}
    _check_positions(model, config.max_length)

    # 3. Tokenize and apply the length policy ------------------------------------------------
    train_rows, train_length = encode_pairs(train_pairs, tokenizer, config)
    eval_rows, eval_length = encode_pairs(eval_pairs, tokenizer, config)
    if not train_rows:
        raise DatasetError(
            f"All {len(train_pairs)} training pairs are longer than max_length={config.max_length} "
            "tokens and were dropped. Raise `max_length` or use truncation='truncate_left'."
        )

    # 4. Train, then 5. the final held-out evaluation (unless the last step just ran one) ----
    progress = ProgressCallback(on_step, should_stop)
    trainer = ArbiterRewardTrainer(
        model=model,
        args=RewardConfig(
            **trainer_arguments(config, checkpoint_root, has_eval=bool(eval_rows)),
            center_rewards_coefficient=config.center_rewards_coefficient,
        ),
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        callbacks=[progress],
    )
    result = train_and_evaluate(
        trainer,
        progress,
        TrainResult,
        resume_path=resume_path,
        output_dir=output_dir,
        counts={
            "pairs": len(pairs),
            "train_pairs": len(train_rows),
            "eval_pairs": len(eval_rows),
            "truncated": train_length.truncated + eval_length.truncated,
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
            "base_model_path": str(model_dir),
            "dataset_hash": dataset_hash,
            "config": config.to_dict(),
            "max_length": config.max_length,
            "truncation": config.truncation,
            "eos_appended_as_text": not appends_eos(tokenizer),
        },
        summary_file=ARBITER_FILE,
        model_card=model_card,
    )
    return result


class ArbiterRewardTrainer(RewardTrainer):
    """TRL's RewardTrainer with exact held-out metrics and no telemetry.

    TRL averages eval accuracy per batch, which is off when the last batch is short; here
    every pair's reward difference is kept during evaluation and the accuracy and mean
    margin are computed over all of them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._eval_diffs: list[torch.Tensor] = []
        super().__init__(*args, **kwargs)

    def _send_telemetry(self) -> None:
        # Arbiter makes no network calls at run time beyond its configured services.
        return None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(
            model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
        )
        if not self.model.training:
            b_chosen, b_rejected = torch.chunk(outputs.logits.detach().squeeze(-1), chunks=2)
            diffs = self.accelerator.gather_for_metrics(b_chosen - b_rejected)
            self._eval_diffs.append(diffs.float().cpu())
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if not self.model.training and self._eval_diffs:
            all_diffs = torch.cat(self._eval_diffs)
            self._eval_diffs = []
            self._metrics["eval"]["accuracy"] = [(all_diffs > 0).float().mean().item()]
            self._metrics["eval"]["margin"] = [all_diffs.mean().item()]
        super().log(logs, start_time)


class ProgressCallback(TrainerCallback):
    """Forward metrics to `on_step`, keep the histories, stop cleanly when asked (also for DPO)."""

    def __init__(self, on_step: OnStep | None, should_stop: ShouldStop | None) -> None:
        self.on_step = on_step
        self.should_stop = should_stop
        self.stopped = False
        self.log_history: list[dict[str, float]] = []
        self.eval_history: list[dict[str, float]] = []

    def on_step_end(self, args, state, control, **kwargs):
        if self.should_stop is not None and self.should_stop():
            self.stopped = True
            control.should_training_stop = True
            control.should_save = True  # resume continues from exactly this step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if (
            not logs or "loss" not in logs
        ):  # eval logs go through on_evaluate; the summary is skipped
            return
        metrics = _numbers(logs)
        self.log_history.append({"step": state.global_step, **metrics})
        if self.on_step is not None:
            self.on_step(state.global_step, state.max_steps, metrics)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        numbers = {k: v for k, v in _numbers(metrics or {}).items() if k.startswith("eval_")}
        entry = {"step": state.global_step, "epoch": float(state.epoch or 0.0), **numbers}
        self.eval_history.append(entry)
        if self.on_step is not None:
            self.on_step(state.global_step, state.max_steps, numbers)


def encode_pairs(
    pairs: Sequence[Pair], tokenizer: Any, config: RewardModelConfig
) -> tuple[list[dict[str, Any]], LengthReport]:
    """Tokenize pairs into TRL's processed form and apply the length policy, counting it."""
    add_eos = not appends_eos(tokenizer)
    special = frozenset(tokenizer.all_special_ids)
    rows: list[dict[str, Any]] = []
    truncated = dropped = longest = 0
    for pair in pairs:
        chosen_ids = encode(
            tokenizer, conversation_text(tokenizer, pair.prompt + pair.chosen, add_eos=add_eos)
        )
        rejected_ids = encode(
            tokenizer, conversation_text(tokenizer, pair.prompt + pair.rejected, add_eos=add_eos)
        )
        longest = max(longest, len(chosen_ids), len(rejected_ids))
        if max(len(chosen_ids), len(rejected_ids)) > config.max_length:
            if config.truncation == "drop":
                dropped += 1
                continue
            truncated += 1
            chosen_ids = truncate_left(chosen_ids, config.max_length, special)
            rejected_ids = truncate_left(rejected_ids, config.max_length, special)
        row: dict[str, Any] = {"chosen_ids": chosen_ids, "rejected_ids": rejected_ids}
        if config.use_margin:
            row["margin"] = float(pair.margin)  # type: ignore[arg-type]
        rows.append(row)
    report = LengthReport(
        policy=config.truncation,
        max_length=config.max_length,
        pairs=len(pairs),
        kept=len(rows),
        truncated=truncated,
        dropped=dropped,
        longest=longest,
    )
    return rows, report


def split_held_out(items: Sequence[T], eval_fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """Hold out `eval_fraction` of the items, chosen by a seeded shuffle; keep their order."""
    if eval_fraction == 0:
        return list(items), []
    n_eval = min(max(1, round(len(items) * eval_fraction)), len(items) - 1)
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    held_out = set(order[:n_eval])
    return (
        [p for i, p in enumerate(items) if i not in held_out],
        [p for i, p in enumerate(items) if i in held_out],
    )


def model_card(summary: dict[str, Any]) -> str:
    """Render the README.md saved with a trained reward model."""
    config = summary["config"]
    length = summary["length"]
    loss = "-logsigmoid(r_chosen - r_rejected" + (" - margin)" if config["use_margin"] else ")")
    if config["center_rewards_coefficient"] is not None:
        loss += f" + {config['center_rewards_coefficient']} * mean(r^2)"
    policy = (
        "cut from the front of the conversation (the replies are at the end)"
        if summary["truncation"] == "truncate_left"
        else "left out of training"
    )
    return f"""---
library_name: transformers
pipeline_tag: text-classification
tags: [arbiter, reward-model, trl]
---

# Reward model

Trained by Arbiter with TRL's `RewardTrainer` (Bradley–Terry loss `{loss}`) from the local
base model `{summary["base_model_path"]}`.

## Data

{card_pairs(summary)}
- length policy `{summary["truncation"]}` at {summary["max_length"]} tokens: pairs longer than that were {policy}.
  Train: {length["train"]["truncated"]} truncated, {length["train"]["dropped"]} dropped of {length["train"]["pairs"]};
  held out: {length["eval"]["truncated"]} truncated, {length["eval"]["dropped"]} dropped of {length["eval"]["pairs"]}.

## Final metrics (held out: accuracy = share of pairs with r_chosen > r_rejected)

{card_metric_table(summary["metrics"])}

## Config

```json
{json.dumps(config, indent=2)}
```

## Use

The input is the conversation rendered with the saved chat template{", followed by the EOS token" if summary["eos_appended_as_text"] else ""};
the score is the raw logit (`function_to_apply="none"`). `training.scoring.load_scorer(path)` does this,
truncating from the front at {summary["max_length"]} tokens.

```python
from transformers import AutoTokenizer, pipeline
tok = AutoTokenizer.from_pretrained(path)
text = tok.apply_chat_template(prompt + [{{"role": "assistant", "content": reply}}], tokenize=False){" + tok.eos_token" if summary["eos_appended_as_text"] else ""}
pipeline("text-classification", model=path)(text, function_to_apply="none")[0]["score"]
```

{card_provenance(summary)}; {summary["global_step"]} optimizer steps.
"""


# -- helpers ------------------------------------------------------------------------------------


def _check_pairs(dataset: Sequence[dict[str, Any]], *, use_margin: bool) -> list[Pair]:
    pairs = []
    for i, (row, prompt, chosen, rejected) in enumerate(
        check_preference_rows(dataset, trainer="a reward model")
    ):
        margin = row.get("margin")
        if use_margin:
            if (
                isinstance(margin, bool)
                or not isinstance(margin, int | float)
                or not math.isfinite(margin)
            ):
                raise DatasetError(
                    f"row {i}: margin: use_margin is on, so every row needs a finite numeric margin "
                    f"(got {margin!r}). Add margins or set use_margin to false."
                )
        pairs.append(Pair(prompt, chosen, rejected, float(margin) if use_margin else None))
    return pairs


def _drop_use_cache_for_encoders(model: Any) -> None:
    """Let encoders (BERT, MiniLM) take TRL's `use_cache=False`, which their forward rejects.

    TRL's RewardTrainer.compute_loss always passes `use_cache=False`; a model whose forward
    has no such parameter fails with a TypeError. The wrapper is per instance and is not saved.
    """
    params = inspect.signature(model.forward).parameters
    if "use_cache" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    ):
        return
    forward = model.forward

    @functools.wraps(forward)
    def forward_without_use_cache(*args: Any, use_cache: bool | None = None, **kwargs: Any) -> Any:
        return forward(*args, **kwargs)

    model.forward = forward_without_use_cache


def _check_positions(model: Any, max_length: int) -> None:
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and max_length > limit:
        raise ValueError(
            f"`max_length` ({max_length}) exceeds the base model's position limit "
            f"(max_position_embeddings={limit}). Set max_length to {limit} or less."
        )


def _numbers(logs: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in logs.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
