"""Training-run configurations: the shared base and the reward model's. No Django, no torch here.

`RunConfig` is the base of every kind's config (`RewardModelConfig` here, `training.dpo.DPOConfig`,
`training.ppo.config.PPOConfig`): the type checks of the fields, `from_dict` and `to_dict`;
`TrainerRunConfig` declares the fields, and holds the checks, shared by the kinds built on
transformers' Trainer.

`RewardModelConfig` is what a TrainingRun stores and what `train_reward_model` takes. It is
validated when created, like TRL's configs, and every error names the field and the fix, so a
bad value is refused when the run is queued rather than minutes into a training job.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

TRUNCATION_POLICIES = ("truncate_left", "drop")
MIXED_PRECISION = ("auto", "no", "bf16", "fp16")
LR_SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")


class ConfigError(ValueError):
    """A configuration value that cannot be used; `field` names the offending key."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


class RunConfig:
    """What every run config shares: the type checks of its fields, `from_dict` and `to_dict`.

    A run config is a dataclass with an `output_dir` field that subclasses this class, names
    its fields by type in the class variables below and calls `check_types()` first in its
    `__post_init__`. This class declares no fields: a config's `dataclasses.fields` (and the
    docs written under them, which forms show) are those of its dataclass and its dataclass bases.
    """

    INT_FIELDS: ClassVar[tuple[str, ...]] = ()
    OPTIONAL_INT_FIELDS: ClassVar[tuple[str, ...]] = ()
    NUMBER_FIELDS: ClassVar[tuple[str, ...]] = ()
    OPTIONAL_NUMBER_FIELDS: ClassVar[tuple[str, ...]] = ()
    BOOL_FIELDS: ClassVar[tuple[str, ...]] = ()
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {}  # allowed values of string fields

    if TYPE_CHECKING:
        output_dir: str
        save_total_limit: int | None

    def check_types(self) -> None:
        """Refuse an empty `output_dir` and a field of the wrong type, naming the field."""
        if not isinstance(self.output_dir, str) or not self.output_dir.strip():
            raise ConfigError("output_dir", "`output_dir` must be a non-empty folder path string.")
        for name in self.INT_FIELDS:
            require_int(name, getattr(self, name))
        for name in self.OPTIONAL_INT_FIELDS:
            if getattr(self, name) is not None:
                require_int(name, getattr(self, name))
        for name in self.NUMBER_FIELDS:
            require_number(name, getattr(self, name))
        for name in self.OPTIONAL_NUMBER_FIELDS:
            if getattr(self, name) is not None:
                require_number(name, getattr(self, name))
        for name in self.BOOL_FIELDS:
            require_bool(name, getattr(self, name))

    def check_at_least_one(self, names: tuple[str, ...]) -> None:
        """Refuse a count below 1 in any of the fields `names`."""
        for name in names:
            if getattr(self, name) < 1:
                raise ConfigError(name, f"`{name}` must be >= 1, got {getattr(self, name)}.")

    def check_save_total_limit(self) -> None:
        """Refuse a checkpoint limit below 1 (None keeps every checkpoint)."""
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise ConfigError(
                "save_total_limit",
                f"`save_total_limit` must be >= 1, got {self.save_total_limit}. Use null to keep every "
                "checkpoint.",
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build a config from a JSON-like dict, refusing keys that are not fields."""
        if not isinstance(data, dict):
            raise ConfigError(
                "config", f"The config must be a JSON object, got {type(data).__name__}."
            )
        known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = [key for key in data if key not in known]
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            raise ConfigError(
                str(key), f"Unknown config key `{key}`.{hint} Known keys: {', '.join(known)}."
            )
        if "output_dir" not in data:
            raise ConfigError(
                "output_dir", "`output_dir` is required: the folder the run writes to."
            )
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-serializable dict (round-trips through `from_dict`)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]


@dataclass
class TrainerRunConfig(RunConfig):
    """The settings that the kinds trained with transformers' Trainer share (reward model, DPO).

    Each field is declared here once, with its type and place in the config; a kind redeclares
    a field only to give it its own default or a docstring that speaks of that kind. The checks
    of these fields are the methods below, which each kind calls from its `__post_init__`
    among its own checks.
    """

    output_dir: str
    """Folder of the run: `checkpoints/` (for resuming) and `model/` (the final artifacts)."""

    learning_rate: float = 1e-4
    """Peak AdamW learning rate."""

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
    """Most tokens of prompt + reply; longer pairs follow `truncation`."""

    truncation: str = "truncate_left"
    """What to do with a pair over `max_length`: `"truncate_left"` cuts tokens from the front,
    `"drop"` leaves the pair out; both are counted, never silent."""

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
    """Seed of the held-out split and the data order."""

    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory (slower)."""

    mixed_precision: str = "auto"
    """`"auto"` (bf16 on a GPU that supports it, float32 elsewhere), `"no"`, `"bf16"` or
    `"fp16"`. bf16 on a CPU without native support is many times slower."""

    INT_FIELDS: ClassVar[tuple[str, ...]] = (
        "per_device_train_batch_size",
        "per_device_eval_batch_size",
        "gradient_accumulation_steps",
        "max_length",
        "logging_steps",
        "save_steps",
        "seed",
    )
    OPTIONAL_INT_FIELDS: ClassVar[tuple[str, ...]] = ("max_steps", "eval_steps", "save_total_limit")
    NUMBER_FIELDS: ClassVar[tuple[str, ...]] = (
        "learning_rate",
        "num_train_epochs",
        "weight_decay",
        "warmup_ratio",
        "max_grad_norm",
        "eval_fraction",
    )
    BOOL_FIELDS: ClassVar[tuple[str, ...]] = ("gradient_checkpointing",)
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "truncation": TRUNCATION_POLICIES,
        "mixed_precision": MIXED_PRECISION,
        "lr_scheduler_type": LR_SCHEDULERS,
    }

    def check_learning_rate(self, typical: str) -> None:
        """Refuse a learning rate outside (0, 1); `typical` names the usual values of the kind."""
        if not 0 < self.learning_rate < 1:
            raise ConfigError(
                "learning_rate",
                f"`learning_rate` must be > 0 and < 1, got {self.learning_rate}. Use a small positive "
                f"value such as {typical} to 1e-3 (tiny models).",
            )

    def check_max_length(self, model: str) -> None:
        """Refuse fewer than 8 tokens; `model` names the model whose position limit bounds it."""
        if self.max_length < 8:
            raise ConfigError(
                "max_length",
                f"`max_length` must be >= 8 tokens, got {self.max_length}. Typical values are 512 to "
                f"2048; it cannot exceed the {model}'s position limit.",
            )

    def check_truncation(self, fix: str) -> None:
        """Check `truncation` against `TRUNCATION_POLICIES`; `fix` says what each policy does."""
        if self.truncation not in TRUNCATION_POLICIES:
            raise ConfigError(
                "truncation",
                f"`truncation` must be one of {choices(TRUNCATION_POLICIES)}, got {self.truncation!r}. "
                f"{fix}",
            )

    def check_schedule(self, at_least_one: tuple[str, ...]) -> None:
        """Check the training length, the counts `at_least_one`, the intervals and the optimizer."""
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
        self.check_at_least_one(at_least_one)
        if self.eval_steps is not None and self.eval_steps < 1:
            raise ConfigError(
                "eval_steps",
                f"`eval_steps` must be >= 1, got {self.eval_steps}. Use null to evaluate only at the end.",
            )
        self.check_save_total_limit()
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
                f"`lr_scheduler_type` must be one of {choices(LR_SCHEDULERS)}, got "
                f"{self.lr_scheduler_type!r}.",
            )
        if not self.max_grad_norm > 0:
            raise ConfigError(
                "max_grad_norm", f"`max_grad_norm` must be > 0, got {self.max_grad_norm}."
            )

    def check_held_out(self) -> None:
        """Check the held-out share and the seed that picks it."""
        if not 0 <= self.eval_fraction < 1:
            raise ConfigError(
                "eval_fraction",
                f"`eval_fraction` must be >= 0 and < 1, got {self.eval_fraction}. Use 0.1 to hold out "
                "10% of the pairs, or 0 for no held-out evaluation.",
            )
        if self.seed < 0:
            raise ConfigError("seed", f"`seed` must be >= 0, got {self.seed}.")

    def check_mixed_precision(self) -> None:
        """Check `mixed_precision` against `MIXED_PRECISION`."""
        if self.mixed_precision not in MIXED_PRECISION:
            raise ConfigError(
                "mixed_precision",
                f"`mixed_precision` must be one of {choices(MIXED_PRECISION)}, got "
                f"{self.mixed_precision!r}.",
            )


@dataclass
class RewardModelConfig(TrainerRunConfig):
    """Settings of one reward-model training run (Bradley–Terry loss, TRL's `RewardTrainer`)."""

    learning_rate: float = 1e-4
    """Peak AdamW learning rate; 1e-5 to 5e-5 suits pretrained backbones, 1e-3 tiny ones."""

    max_length: int = 512
    """Most tokens of one conversation (prompt + reply); longer ones follow `truncation`."""

    truncation: str = "truncate_left"
    """What to do with a pair longer than `max_length`: `"truncate_left"` cuts tokens from the
    front of the conversation (the replies differ at the end, so cutting the end could make
    chosen and rejected identical); `"drop"` leaves the pair out. Both are counted and
    reported in the result and the model card, never silent."""

    seed: int = 42
    """Seed of the held-out split, the head initialization and the data order."""

    center_rewards_coefficient: float | None = None
    """Weight of the penalty pulling rewards towards mean zero (Eisenstein et al. 2023);
    0.01 is the usual value, None turns it off."""

    use_margin: bool = False
    """Subtract each pair's `margin` (preference strength) inside the loss:
    `-logsigmoid(r_chosen - r_rejected - margin)`. Every pair must then carry a margin."""

    OPTIONAL_NUMBER_FIELDS: ClassVar[tuple[str, ...]] = ("center_rewards_coefficient",)
    BOOL_FIELDS: ClassVar[tuple[str, ...]] = ("use_margin", *TrainerRunConfig.BOOL_FIELDS)

    def __post_init__(self) -> None:
        self.check_types()
        self.check_learning_rate("1e-5 (pretrained backbones)")
        self.check_schedule(
            (
                "per_device_train_batch_size",
                "per_device_eval_batch_size",
                "gradient_accumulation_steps",
                "logging_steps",
                "save_steps",
            )
        )
        self.check_max_length("base model")
        self.check_truncation(
            "Use 'truncate_left' to cut long conversations from the front, or 'drop' to leave "
            "long pairs out."
        )
        self.check_held_out()
        if self.center_rewards_coefficient is not None and self.center_rewards_coefficient < 0:
            raise ConfigError(
                "center_rewards_coefficient",
                f"`center_rewards_coefficient` must be >= 0, got {self.center_rewards_coefficient}. "
                "Use 0.01, or null to turn centering off.",
            )
        self.check_mixed_precision()


def choices(values: tuple[str, ...]) -> str:
    """Return the allowed values as an error message lists them: `'a', 'b'`."""
    return ", ".join(repr(v) for v in values)


def require_int(name: str, value: Any) -> None:
    """Refuse a value that is not an integer (a boolean is refused too), naming the field."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"`{name}` must be an integer, got {value!r}.")


def require_number(name: str, value: Any) -> None:
    """Refuse a value that is not a finite int or float (a boolean is refused too), naming the field."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(name, f"`{name}` must be a finite number, got {value!r}.")


def require_bool(name: str, value: Any) -> None:
    """Refuse a value that is not true or false, naming the field."""
    if not isinstance(value, bool):
        raise ConfigError(name, f"`{name}` must be true or false, got {value!r}.")


__all__ = [
    "ConfigError",
    "LR_SCHEDULERS",
    "MIXED_PRECISION",
    "RewardModelConfig",
    "RunConfig",
    "TRUNCATION_POLICIES",
    "TrainerRunConfig",
    "choices",
    "require_bool",
    "require_int",
    "require_number",
]
