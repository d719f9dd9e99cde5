"""What the training functions share: a run's folder, its resume checks and its record. No Django.

Every kind of run writes to its `output_dir`: `run.json` (what the run is: its config, a
fingerprint of its data, its models), `checkpoints/` (resumable states, which
`training.checkpoints` finds) and `model/` (the artifacts, with a summary and a model card).
`prepare_output_dir` records the identity when a run starts and refuses to resume a checkpoint
of a different run.

The kinds trained with transformers' Trainer through TRL (reward model, DPO) also share the
check of their preference rows, the result they return, the Trainer arguments they set and the
train-then-evaluate phase.

torch and transformers are imported inside the functions that use them, so that the modules of
configs (`training.ppo.config`, `training.dpo`) stay importable without them.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from training.checkpoints import CHECKPOINTS, TRAINER_STATE, last_checkpoint
from training.formatting import FormatError, check_messages
from training.model_paths import local_model_dir, resolve_model_path

if TYPE_CHECKING:
    from training.config import TrainerRunConfig
    from training.reward import ProgressCallback

MODEL = "model"
RUN_FILE = "run.json"
# How a resume refusal names an identity key of run.json.
_CHANGED = {"data": "dataset", "policy": "policy model", "reference": "reference model"}

L = TypeVar("L")  # the length report of a kind
R = TypeVar("R", bound="TrainerResult[Any]")
Messages = list[dict[str, str]]


class DatasetError(ValueError):
    """A preference dataset that cannot be trained on; the message names the row and field."""


def check_preference_rows(
    dataset: Sequence[dict[str, Any]], *, trainer: str
) -> Iterator[tuple[dict[str, Any], Messages, Messages, Messages]]:
    """Yield each row with its checked prompt, chosen and rejected messages.

    Raise DatasetError naming the first bad row and field; `trainer` names what needs at least
    two pairs ("a reward model", "DPO"). Rows are checked as they are taken, so that a caller's
    own check of row i comes before the format check of row i + 1.
    """
    if not isinstance(dataset, Sequence) or isinstance(dataset, str | bytes):
        raise DatasetError(
            f"dataset must be a list of preference rows (dicts), got {type(dataset).__name__}"
        )
    if len(dataset) < 2:
        raise DatasetError(f"dataset has {len(dataset)} row(s); {trainer} needs at least 2 pairs")
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
        yield row, prompt, chosen, rejected


@dataclass
class TrainerResult(Generic[L]):
    """The outcome of a run trained with transformers' Trainer."""

    status: str  # "completed" or "stopped" (should_stop returned True; resumable)
    global_step: int
    total_steps: int
    metrics: dict[str, float]
    eval_history: list[dict[str, float]]
    log_history: list[dict[str, float]]
    artifact_dir: Path | None
    checkpoint_dir: Path | None
    counts: dict[str, int]
    length: dict[str, L]
    samples_per_second: float
    train_runtime: float
    tokenizer_changes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Return the part of the saved summary that describes the training and its libraries."""
        return {
            "tokenizer_changes": self.tokenizer_changes,
            "counts": self.counts,
            "length": {k: asdict(v) for k, v in self.length.items()},  # type: ignore[call-overload]
            "metrics": self.metrics,
            "eval_history": self.eval_history,
            "global_step": self.global_step,
            "samples_per_second": self.samples_per_second,
            "versions": versions("torch", "transformers", "trl"),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }


def resolve_model_dir(path: str | Path, model_roots: Iterable[str | Path] | None) -> Path:
    """Return the local model folder at `path`: checked under `model_roots` when given."""
    if model_roots is not None:
        return resolve_model_path(path, roots=model_roots)
    return local_model_dir(path)


def fingerprint(rows: Sequence[Any]) -> str:
    """Return a sha256 of the rows (as sorted-key JSON), used to refuse resuming on other data."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _first_change(changed: list[str]) -> str:
    return f"the {_CHANGED.get(changed[0], changed[0])} differs"


def prepare_output_dir(
    output_dir: Path,
    identity: dict[str, Any],
    resume_from_checkpoint: bool | str | Path | None,
    *,
    same: str,
    describe_change: Callable[[list[str]], str] = _first_change,
    state_file: str = TRAINER_STATE,
    require_state: bool = False,
    kind: str = "training",
) -> Path | None:
    """Record the run's identity; on resume, check it matches and return the checkpoint.

    A fresh run (`resume_from_checkpoint` None or False) is refused when `checkpoints/` already
    holds one; True resumes the newest; a path must be a `kind` checkpoint (a folder with
    `state_file`). With `require_state` only folders holding `state_file` count as checkpoints;
    without, every `checkpoint-N` folder does, as transformers' Trainer resumes. A resume is
    refused when an identity key differs from `run.json`: `describe_change(changed keys)` says
    which, and the message asks to resume with the same `same`.
    """
    run_file = output_dir / RUN_FILE
    checkpoint_root = output_dir / CHECKPOINTS
    state_files = (state_file,) if require_state else None
    if resume_from_checkpoint in (None, False):
        if last_checkpoint(output_dir, state_files=state_files) is not None:
            raise ValueError(
                f"{checkpoint_root} already holds checkpoints of an earlier run. Pass "
                "resume_from_checkpoint=True to continue it, or use a new output_dir."
            )
        output_dir.mkdir(parents=True, exist_ok=True)
        run_file.write_text(json.dumps(identity, indent=2) + "\n")
        return None
    if resume_from_checkpoint is True:
        path = last_checkpoint(output_dir, state_files=state_files)
        if path is None:
            raise ValueError(f"No checkpoint to resume from in {checkpoint_root}.")
    else:
        path = Path(resume_from_checkpoint)
        if not (path / state_file).is_file():
            raise ValueError(f"{path} is not a {kind} checkpoint (no {state_file}).")
    if run_file.is_file():
        before = json.loads(run_file.read_text())
        changed = [key for key in identity if before.get(key) != identity[key]]
        if changed:
            raise ValueError(
                f"Cannot resume: {describe_change(changed)} from the run that wrote {path}. Resume "
                f"with the same {same}, or start a new run in a new output_dir."
            )
    return path


def versions(*packages: str) -> dict[str, str]:
    """Return the installed version of each package, recorded with a run's artifacts."""
    return {name: importlib.import_module(name).__version__ for name in packages}


def trainer_arguments(
    config: TrainerRunConfig, checkpoint_root: Path, *, has_eval: bool
) -> dict[str, Any]:
    """Return the Trainer arguments that the reward-model and DPO configs set alike.

    They override TRL's CPU-hostile defaults; each kind adds its own (loss, length limits).
    """
    import torch

    if config.mixed_precision == "auto":
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    else:
        bf16 = config.mixed_precision == "bf16"
    evaluate_every = has_eval and config.eval_steps is not None
    return dict(
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
        # The length policy was applied already; TRL's own filter or collator would drop pairs
        # or cut replies silently.
        max_length=None,
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


def train_and_evaluate(
    trainer: Any,
    progress: ProgressCallback,
    result_class: type[R],
    *,
    resume_path: Path | None,
    output_dir: Path,
    counts: dict[str, int],
    length: dict[str, Any],
    tokenizer_changes: list[str],
) -> R:
    """Train; unless stopped, evaluate the held-out rows once more (unless the last step did).

    Return the result, with the training loss and the last held-out metrics; `counts`,
    `length` and `tokenizer_changes` describe the data as it was prepared.
    """
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # metrics go to on_step, not stdout
    train_output = trainer.train(resume_from_checkpoint=str(resume_path) if resume_path else None)
    state = trainer.state
    result = result_class(
        status="stopped" if progress.stopped else "completed",
        global_step=state.global_step,
        total_steps=state.max_steps,
        metrics={"train_loss": float(train_output.training_loss)},
        eval_history=progress.eval_history,
        log_history=progress.log_history,
        artifact_dir=None,
        checkpoint_dir=last_checkpoint(output_dir, state_files=None),
        counts=counts,
        length=length,
        samples_per_second=float(train_output.metrics.get("train_samples_per_second", 0.0)),
        train_runtime=float(train_output.metrics.get("train_runtime", 0.0)),
        tokenizer_changes=tokenizer_changes,
    )
    if progress.stopped:
        return result
    if trainer.eval_dataset is not None and not (
        progress.eval_history and progress.eval_history[-1]["step"] == state.global_step
    ):
        trainer.evaluate()
    if progress.eval_history:
        result.metrics.update(
            {k: v for k, v in progress.eval_history[-1].items() if k.startswith("eval_")}
        )
    return result


def save_artifacts(
    trainer: Any,
    result: TrainerResult[Any],
    *,
    output_dir: Path,
    summary: dict[str, Any],
    summary_file: str,
    model_card: Callable[[dict[str, Any]], str],
) -> None:
    """Save the trained model and tokenizer, the summary and the model card under `model/`.

    The summary written is `summary` followed by `result.summary()`; `result.artifact_dir` is
    set to the folder.
    """
    artifact_dir = output_dir / MODEL
    trainer.save_model(str(artifact_dir))  # safetensors weights + tokenizer (with chat template)
    summary = {**summary, **result.summary()}
    (artifact_dir / summary_file).write_text(json.dumps(summary, indent=2) + "\n")
    (artifact_dir / "README.md").write_text(model_card(summary))
    result.artifact_dir = artifact_dir


def card_metric_table(metrics: dict[str, float]) -> str:
    """Return a model card's table of metrics, sorted by name."""
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(metrics.items()))
    return f"| metric | value |\n| --- | --- |\n{rows}"


def card_provenance(summary: dict[str, Any]) -> str:
    """Return a model card's closing lines, up to the final stop: tokenizer changes, date, versions."""
    versions = ", ".join(f"{k} {v}" for k, v in summary["versions"].items())
    return f"""Tokenizer changes made for training: {"; ".join(summary["tokenizer_changes"]) or "none"}.
Trained {summary["created"]} with {versions}"""


def card_pairs(summary: dict[str, Any]) -> str:
    """Return a preference model card's data lines: the dataset hash and the held-out split."""
    config, counts = summary["config"], summary["counts"]
    return f"""- dataset hash: `{summary["dataset_hash"] or "not given"}`
- pairs: {counts["pairs"]} in all; {counts["train_pairs"]} trained on, {counts["eval_pairs"]} held out
  (share {config["eval_fraction"]}, seed {config["seed"]})"""


__all__ = [
    "DatasetError",
    "MODEL",
    "RUN_FILE",
    "TrainerResult",
    "card_metric_table",
    "card_pairs",
    "card_provenance",
    "check_preference_rows",
    "fingerprint",
    "prepare_output_dir",
    "resolve_model_dir",
    "save_artifacts",
    "train_and_evaluate",
    "trainer_arguments",
    "versions",
]
