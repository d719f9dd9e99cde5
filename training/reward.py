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
import hashlib
import inspect
import json
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import torch
from datasets import Dataset
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PrinterCallback,
    TrainerCallback,
    set_seed,
)
from transformers.trainer_utils import get_last_checkpoint
from trl import RewardConfig, RewardTrainer

from training.config import RewardModelConfig
from training.formatting import (
    FormatError,
    appends_eos,
    check_messages,
    conversation_text,
    encode,
    prepare_tokenizer,
    truncate_left,
)
from training.model_paths import local_model_dir, resolve_model_path

T = TypeVar("T")
OnStep = Callable[[int, int, dict[str, float]], None]
ShouldStop = Callable[[], bool]

CHECKPOINTS = "checkpoints"
MODEL = "model"
RUN_FILE = "run.json"
ARBITER_FILE = "arbiter_reward.json"


class DatasetError(ValueError):
    """A preference dataset that cannot be trained on; the message names the row and field."""


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
class TrainResult:
    """The outcome of `train_reward_model`."""

    status: str  # "completed" or "stopped" (should_stop returned True; resumable)
    global_step: int
    total_steps: int
    metrics: dict[str, float]
    eval_history: list[dict[str, float]]
    log_history: list[dict[str, float]]
    artifact_dir: Path | None
    checkpoint_dir: Path | None
    counts: dict[str, int]
    length: dict[str, LengthReport]
    samples_per_second: float
    train_runtime: float
    tokenizer_changes: list[str] = field(default_factory=list)


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
    model_dir = (
        resolve_model_path(base_model_path, roots=model_roots)
        if model_roots is not None
        else local_model_dir(base_model_path)
    )
    resume_path = _prepare_output_dir(output_dir, config, pairs, resume_from_checkpoint)
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

    # 4. Train -------------------------------------------------------------------------------
    progress = _ProgressCallback(on_step, should_stop)
    trainer = ArbiterRewardTrainer(
        model=model,
        args=_trl_args(config, checkpoint_root, has_eval=bool(eval_rows)),
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        callbacks=[progress],
    )
    trainer.remove_callback(PrinterCallback)  # metrics go to on_step, not stdout
    train_output = trainer.train(resume_from_checkpoint=str(resume_path) if resume_path else None)
    state = trainer.state
    counts = {
        "pairs": len(pairs),
        "train_pairs": len(train_rows),
        "eval_pairs": len(eval_rows),
        "truncated": train_length.truncated + eval_length.truncated,
        "dropped": train_length.dropped + eval_length.dropped,
    }
    result = TrainResult(
        status="stopped" if progress.stopped else "completed",
        global_step=state.global_step,
        total_steps=state.max_steps,
        metrics={"train_loss": float(train_output.training_loss)},
        eval_history=progress.eval_history,
        log_history=progress.log_history,
        artifact_dir=None,
        checkpoint_dir=_last_checkpoint(checkpoint_root),
        counts=counts,
        length={"train": train_length, "eval": eval_length},
        samples_per_second=float(train_output.metrics.get("train_samples_per_second", 0.0)),
        train_runtime=float(train_output.metrics.get("train_runtime", 0.0)),
        tokenizer_changes=tokenizer_changes,
    )
    if progress.stopped:
        return result

    # 5. Final held-out evaluation (unless the last step just ran one) -----------------------
    if eval_rows and not (
        progress.eval_history and progress.eval_history[-1]["step"] == state.global_step
    ):
        trainer.evaluate()
    if progress.eval_history:
        result.metrics.update(
            {k: v for k, v in progress.eval_history[-1].items() if k.startswith("eval_")}
        )

    # 6. Artifacts ---------------------------------------------------------------------------
    artifact_dir = output_dir / MODEL
    trainer.save_model(str(artifact_dir))  # safetensors weights + tokenizer (with chat template)
    summary = {
        "base_model_path": str(model_dir),
        "dataset_hash": dataset_hash,
        "config": config.to_dict(),
        "max_length": config.max_length,
        "truncation": config.truncation,
        "eos_appended_as_text": not appends_eos(tokenizer),
        "tokenizer_changes": tokenizer_changes,
        "counts": counts,
        "length": {k: asdict(v) for k, v in result.length.items()},
        "metrics": result.metrics,
        "eval_history": result.eval_history,
        "global_step": state.global_step,
        "samples_per_second": result.samples_per_second,
        "versions": _versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (artifact_dir / ARBITER_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    (artifact_dir / "README.md").write_text(model_card(summary))
    result.artifact_dir = artifact_dir
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


class _ProgressCallback(TrainerCallback):
    """Forward metrics to `on_step`, keep the histories, stop cleanly when asked."""

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


def dataset_fingerprint(dataset: Sequence[dict[str, Any]]) -> str:
    """Return a sha256 of the rows, used to refuse resuming a run on different data."""
    digest = hashlib.sha256()
    for row in dataset:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def model_card(summary: dict[str, Any]) -> str:
    """Render the README.md saved with a trained reward model."""
    config = summary["config"]
    counts = summary["counts"]
    length = summary["length"]
    metrics = summary["metrics"]
    loss = "-logsigmoid(r_chosen - r_rejected" + (" - margin)" if config["use_margin"] else ")")
    if config["center_rewards_coefficient"] is not None:
        loss += f" + {config['center_rewards_coefficient']} * mean(r^2)"
    policy = (
        "cut from the front of the conversation (the replies are at the end)"
        if summary["truncation"] == "truncate_left"
        else "left out of training"
    )
    metric_rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(metrics.items()))
    versions = ", ".join(f"{k} {v}" for k, v in summary["versions"].items())
    return f"""---
library_name: transformers
pipeline_tag: text-classification
tags: [arbiter, reward-model, trl]
---

# Reward model

Trained by Arbiter with TRL's `RewardTrainer` (Bradley–Terry loss `{loss}`) from the local
base model `{summary["base_model_path"]}`.

## Data

- dataset hash: `{summary["dataset_hash"] or "not given"}`
- pairs: {counts["pairs"]} in all; {counts["train_pairs"]} trained on, {counts["eval_pairs"]} held out
  (share {config["eval_fraction"]}, seed {config["seed"]})
- length policy `{summary["truncation"]}` at {summary["max_length"]} tokens: pairs longer than that were {policy}.
  Train: {length["train"]["truncated"]} truncated, {length["train"]["dropped"]} dropped of {length["train"]["pairs"]};
  held out: {length["eval"]["truncated"]} truncated, {length["eval"]["dropped"]} dropped of {length["eval"]["pairs"]}.

## Final metrics (held out: accuracy = share of pairs with r_chosen > r_rejected)

| metric | value |
| --- | --- |
{metric_rows}

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

Tokenizer changes made for training: {"; ".join(summary["tokenizer_changes"]) or "none"}.
Trained {summary["created"]} with {versions}; {summary["global_step"]} optimizer steps.
"""


# -- helpers ------------------------------------------------------------------------------------


def _check_pairs(dataset: Sequence[dict[str, Any]], *, use_margin: bool) -> list[Pair]:
    if not isinstance(dataset, Sequence) or isinstance(dataset, str | bytes):
        raise DatasetError(
            f"dataset must be a list of preference rows (dicts), got {type(dataset).__name__}"
        )
    if len(dataset) < 2:
        raise DatasetError(
            f"dataset has {len(dataset)} row(s); a reward model needs at least 2 pairs"
        )
    pairs = []
    for i, row in enumerate(dataset):
        if not isinstance(row, dict):
            raise DatasetError(
                f"row {i}: must be a dict with prompt/chosen/rejected, got {type(row).__name__}"
            )
        try:
            prompt = check_messages(row.get("prompt", []), f"row {i}: prompt", allow_empty=True)
            for key in ("chosen", "rejected"):
                if key not in row:
                    raise FormatError(f"row {i}: {key}: missing")
            chosen = check_messages(row["chosen"], f"row {i}: chosen")
            rejected = check_messages(row["rejected"], f"row {i}: rejected")
        except FormatError as exc:
            raise DatasetError(
                f"{exc}. Rows use TRL's conversational preference format: "
                "{'prompt': [messages], 'chosen': [messages], 'rejected': [messages]}."
            ) from None
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


def _prepare_output_dir(
    output_dir: Path,
    config: RewardModelConfig,
    pairs: Sequence[Pair],
    resume_from_checkpoint: bool | str | Path | None,
) -> Path | None:
    """Record the run's identity; on resume, check it matches and return the checkpoint."""
    run = {"config": config.to_dict(), "data": dataset_fingerprint([asdict(p) for p in pairs])}
    run_file = output_dir / RUN_FILE
    checkpoint_root = output_dir / CHECKPOINTS
    if resume_from_checkpoint in (None, False):
        if _last_checkpoint(checkpoint_root) is not None:
            raise ValueError(
                f"{checkpoint_root} already holds checkpoints of an earlier run. Pass "
                "resume_from_checkpoint=True to continue it, or use a new output_dir."
            )
        output_dir.mkdir(parents=True, exist_ok=True)
        run_file.write_text(json.dumps(run, indent=2) + "\n")
        return None
    if resume_from_checkpoint is True:
        path = _last_checkpoint(checkpoint_root)
        if path is None:
            raise ValueError(f"No checkpoint to resume from in {checkpoint_root}.")
    else:
        path = Path(resume_from_checkpoint)
        if not (path / "trainer_state.json").is_file():
            raise ValueError(f"{path} is not a training checkpoint (no trainer_state.json).")
    if run_file.is_file():
        before = json.loads(run_file.read_text())
        if before != run:
            changed = "config" if before.get("config") != run["config"] else "dataset"
            raise ValueError(
                f"Cannot resume: the {changed} differs from the run that wrote {path}. Resume with the "
                "same config and dataset, or start a new run in a new output_dir."
            )
    return path


def _last_checkpoint(checkpoint_root: Path) -> Path | None:
    if not checkpoint_root.is_dir():
        return None
    last = get_last_checkpoint(str(checkpoint_root))
    return Path(last) if last else None


def _trl_args(config: RewardModelConfig, checkpoint_root: Path, *, has_eval: bool) -> RewardConfig:
    """Map Arbiter's config onto TRL's RewardConfig, overriding its CPU-hostile defaults."""
    if config.mixed_precision == "auto":
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    else:
        bf16 = config.mixed_precision == "bf16"
    evaluate_every = has_eval and config.eval_steps is not None
    return RewardConfig(
        output_dir=str(checkpoint_root),
        learning_rate=config.learning_rate,
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps if config.max_steps is not None else -1,
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio,
        lr_scheduler_type=config.lr_scheduler_type,
        max_grad_norm=config.max_grad_norm,
        # TRL turns bf16 on whenever fp16 is off (70-90 s a step on a CPU without bf16) and
        # gradient checkpointing on by default: both are explicit here.
        bf16=bf16,
        fp16=config.mixed_precision == "fp16",
        gradient_checkpointing=config.gradient_checkpointing,
        # The length policy was applied already; TRL's own filter would drop pairs silently.
        max_length=None,
        center_rewards_coefficient=config.center_rewards_coefficient,
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        eval_strategy="steps" if evaluate_every else "no",
        eval_steps=config.eval_steps if evaluate_every else None,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        save_only_model=False,  # optimizer, scheduler and RNG states make resuming exact
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        push_to_hub=False,
    )


def _numbers(logs: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in logs.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _versions() -> dict[str, str]:
    import transformers
    import trl

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
    }
