"""Arbiter's reward-model training configuration. No Django, no torch here.

`RewardModelConfig` is what a TrainingRun stores and what `train_reward_model` takes. It is
validated when created, like TRL's configs, and every error names the field and the fix, so a
bad value is refused when the run is queued rather than minutes into a training job.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import Any, ClassVar

TRUNCATION_POLICIES = ("truncate_left", "drop")
MIXED_PRECISION = ("auto", "no", "bf16", "fp16")
LR_SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")


class ConfigError(ValueError):
    """A configuration value that cannot be used; `field` names the offending key."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


@dataclass
class RewardModelConfig:
    """Settings of one reward-model training run (Bradley–Terry loss, TRL's `RewardTrainer`)."""

    output_dir: str
    """Folder of the run: `checkpoints/` (for resuming) and `model/` (the final artifacts)."""

    learning_rate: float = 1e-4
    """Peak AdamW learning rate; 1e-5 to 5e-5 suits pretrained backbones, 1e-3 tiny ones."""

    num_train_epochs: float = 1.0
    """Passes over the training pairs; ignored when `max_steps` is set."""

    max_steps: int | None = None
    """Optimizer steps to run; when set it overrides `num_train_epochs`."""

    per_device_train_batch_size: int = 8
    """Preference pairs per device per micro-batch (each pair is two sequences)."""

    per_device_eval_batch_size: int = 16
    """Preference pairs per device per evaluation batch."""

    gradient_accumulation_steps: int = 1
    """Micro-batches accumulated before each optimizer step."""

    weight_decay: float = 0.0
    """AdamW weight decay."""

    warmup_ratio: float = 0.0
    """Share of the total steps spent warming the learning rate up from 0."""

    lr_scheduler_type: str = "linear"
    """Learning-rate schedule after warm-up: one of `LR_SCHEDULERS`."""

    max_grad_norm: float = 1.0
    """Gradient-norm clipping threshold."""

    max_length: int = 512
    """Most tokens of one conversation (prompt + reply); longer ones follow `truncation`."""

    truncation: str = "truncate_left"
    """What to do with a pair longer than `max_length`: `"truncate_left"` cuts tokens from the
    front of the conversation (the replies differ at the end, so cutting the end could make
    chosen and rejected identical); `"drop"` leaves the pair out. Both are counted and
    reported in the result and the model card, never silent."""

    eval_fraction: float = 0.1
    """Share of the pairs held out (by a seeded shuffle) for evaluation; 0 disables it."""

    eval_steps: int | None = 50
    """Evaluate the held-out pairs every this many steps (and always once at the end);
    None evaluates only at the end."""

    logging_steps: int = 10
    """Report training metrics (and call `on_step`) every this many steps."""

    save_steps: int = 50
    """Save a resumable checkpoint every this many steps (and when stopped)."""

    save_total_limit: int | None = 2
    """Keep at most this many checkpoints; None keeps them all."""

    seed: int = 42
    """Seed of the held-out split, the head initialization and the data order."""

    center_rewards_coefficient: float | None = None
    """Weight of the penalty pulling rewards towards mean zero (Eisenstein et al. 2023);
    0.01 is the usual value, None turns it off."""

    use_margin: bool = False
    """Subtract each pair's `margin` (preference strength) inside the loss:
    `-logsigmoid(r_chosen - r_rejected - margin)`. Every pair must then carry a margin."""

    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory (slower)."""

    mixed_precision: str = "auto"
    """`"auto"` (bf16 on a GPU that supports it, float32 elsewhere), `"no"`, `"bf16"` or
    `"fp16"`. bf16 on a CPU without native support is many times slower."""

    _INT_FIELDS: ClassVar[tuple[str, ...]] = (
        "per_device_train_batch_size",
        "per_device_eval_batch_size",
        "gradient_accumulation_steps",
        "max_length",
        "logging_steps",
        "save_steps",
        "seed",
    )

    def __post_init__(self) -> None:
        if not isinstance(self.output_dir, str) or not self.output_dir.strip():
            raise ConfigError("output_dir", "`output_dir` must be a non-empty folder path string.")
        for name in self._INT_FIELDS:
            _require_int(name, getattr(self, name))
        for name in ("max_steps", "eval_steps", "save_total_limit"):
            if getattr(self, name) is not None:
                _require_int(name, getattr(self, name))
        for name in (
            "learning_rate",
            "num_train_epochs",
            "weight_decay",
            "warmup_ratio",
            "max_grad_norm",
            "eval_fraction",
        ):
            _require_number(name, getattr(self, name))
        if self.center_rewards_coefficient is not None:
            _require_number("center_rewards_coefficient", self.center_rewards_coefficient)
        for name in ("use_margin", "gradient_checkpointing"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    name, f"`{name}` must be true or false, got {getattr(self, name)!r}."
                )

        if not 0 < self.learning_rate < 1:
            raise ConfigError(
                "learning_rate",
                f"`learning_rate` must be > 0 and < 1, got {self.learning_rate}. Use a small positive "
                "value such as 1e-5 (pretrained backbones) to 1e-3 (tiny models).",
            )
        if self.max_steps is None and not self.num_train_epochs > 0:
            raise ConfigError(
                "num_train_epochs",
                f"`num_train_epochs` must be > 0, got {self.num_train_epochs}. Set it to 1 or more, "
                "or set `max_steps`.",
            )
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(
                "max_steps",
                f"`max_steps` must be >= 1, got {self.max_steps}. Leave it unset (null) to train for "
                "`num_train_epochs` instead.",
            )
        for name in (
            "per_device_train_batch_size",
            "per_device_eval_batch_size",
            "gradient_accumulation_steps",
            "logging_steps",
            "save_steps",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(name, f"`{name}` must be >= 1, got {getattr(self, name)}.")
        if self.eval_steps is not None and self.eval_steps < 1:
            raise ConfigError(
                "eval_steps",
                f"`eval_steps` must be >= 1, got {self.eval_steps}. Use null to evaluate only at the end.",
            )
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise ConfigError(
                "save_total_limit",
                f"`save_total_limit` must be >= 1, got {self.save_total_limit}. Use null to keep every "
                "checkpoint.",
            )
        if self.weight_decay < 0:
            raise ConfigError(
                "weight_decay", f"`weight_decay` must be >= 0, got {self.weight_decay}."
            )
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(
                "warmup_ratio", f"`warmup_ratio` must be >= 0 and < 1, got {self.warmup_ratio}."
            )
        if self.lr_scheduler_type not in LR_SCHEDULERS:
            raise ConfigError(
                "lr_scheduler_type",
                f"`lr_scheduler_type` must be one of {_choices(LR_SCHEDULERS)}, got "
                f"{self.lr_scheduler_type!r}.",
            )
        if not self.max_grad_norm > 0:
            raise ConfigError(
                "max_grad_norm", f"`max_grad_norm` must be > 0, got {self.max_grad_norm}."
            )
        if self.max_length < 8:
            raise ConfigError(
                "max_length",
                f"`max_length` must be >= 8 tokens, got {self.max_length}. Typical values are 512 to "
                "2048; it cannot exceed the base model's position limit.",
            )
        if self.truncation not in TRUNCATION_POLICIES:
            raise ConfigError(
                "truncation",
                f"`truncation` must be one of {_choices(TRUNCATION_POLICIES)}, got {self.truncation!r}. "
                "Use 'truncate_left' to cut long conversations from the front, or 'drop' to leave "
                "long pairs out.",
            )
        if not 0 <= self.eval_fraction < 1:
            raise ConfigError(
                "eval_fraction",
                f"`eval_fraction` must be >= 0 and < 1, got {self.eval_fraction}. Use 0.1 to hold out "
                "10% of the pairs, or 0 for no held-out evaluation.",
            )
        if self.seed < 0:
            raise ConfigError("seed", f"`seed` must be >= 0, got {self.seed}.")
        if self.center_rewards_coefficient is not None and self.center_rewards_coefficient < 0:
            raise ConfigError(
                "center_rewards_coefficient",
                f"`center_rewards_coefficient` must be >= 0, got {self.center_rewards_coefficient}. "
                "Use 0.01, or null to turn centering off.",
            )
        if self.mixed_precision not in MIXED_PRECISION:
            raise ConfigError(
                "mixed_precision",
                f"`mixed_precision` must be one of {_choices(MIXED_PRECISION)}, got "
                f"{self.mixed_precision!r}.",
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RewardModelConfig:
        """Build a config from a JSON-like dict, refusing keys that are not fields."""
        if not isinstance(data, dict):
            raise ConfigError(
                "config", f"The config must be a JSON object, got {type(data).__name__}."
            )
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = [key for key in data if key not in known]
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            raise ConfigError(
                str(key),
                f"Unknown config key `{key}`.{hint} Known keys: {', '.join(known)}.",
            )
        if "output_dir" not in data:
            raise ConfigError(
                "output_dir", "`output_dir` is required: the folder the run writes to."
            )
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-serializable dict (round-trips through `from_dict`)."""
        return dataclasses.asdict(self)


def _choices(values: tuple[str, ...]) -> str:
    return ", ".join(repr(v) for v in values)


def _require_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"`{name}` must be an integer, got {value!r}.")


def _require_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(name, f"`{name}` must be a finite number, got {value!r}.")


__all__ = ["ConfigError", "RewardModelConfig", "TRUNCATION_POLICIES"]
