"""Which plain training function runs each kind of run, and how a run is launched. No Django here.

A kind (`reward`, `ppo`, `dpo`) maps to a `TrainerSpec`: its config dataclass and its plain
training function, both named by import path so that the web process can validate a config
without importing torch. Every training function follows one calling convention:

    train(config, *, dataset, base_model_path, model_roots, dataset_hash,
          on_step, should_stop, resume_from_checkpoint) -> result

where `dataset` is a list of rows (TRL preference rows of a snapshot, or prompt rows), and the
result has `status` ("completed" | "stopped"), `global_step`, `total_steps`, `metrics`,
`artifact_dir` and `checkpoint_dir` (as `training.reward.TrainResult` does). The config class
has `from_dict` (raising `ConfigError(field, message)`) and `to_dict`, an `output_dir` field, and
`CHOICES`, the allowed values of its string fields (which forms offer).

Every kind is one row of `TRAINERS`, declared here: importing a trainer module registers
nothing, and nothing is imported until a spec loads its config class or training function.

A run is launched in the worker's own process, or with `accelerate launch` across several
processes (one per GPU): `launch_with_accelerate` writes a `RunSpec` as JSON, starts
`accelerate launch --num_processes N -m training.launch spec.json`, and reads the progress back
from JSON lines the main process prints on stdout; a stop file asks it to stop.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.config import ConfigError

OnStep = Callable[[int, int, dict[str, float]], None]
ShouldStop = Callable[[], bool]

EVENT_PREFIX = "@arbiter "  # a line the launched process prints for the worker to read
SET_BY_ARBITER = ("output_dir",)  # config fields Arbiter fills in per run; users do not set them


class LaunchError(RuntimeError):
    """The launched training process failed; the message carries its own error or output tail."""


@dataclass(frozen=True)
class TrainerSpec:
    """One kind of training run."""

    kind: str
    config_class: (
        str  # "module:Class", a dataclass with from_dict / to_dict and an output_dir field
    )
    train: str  # "module:function", the plain training function (see the module docstring)
    title: str
    data: str = "preference"  # the rows passed as `dataset`: "preference" (a snapshot's TRL rows) or "prompts"
    model_paths: tuple[str, ...] = ()  # config fields naming model folders (checked like the base model)
    required_model_paths: tuple[str, ...] = ()  # those of them a run must set
    multi_gpu: bool = True  # whether `accelerate launch` across several GPUs is supported

    def load_config_class(self) -> type:
        return _load(self.config_class)

    def load_train(self) -> Callable[..., Any]:
        return _load(self.train)

    def build_config(self, data: Any) -> Any:
        """Return the validated config; raise ConfigError naming the field."""
        return self.load_config_class().from_dict(data)


TRAINERS: dict[str, TrainerSpec] = {
    spec.kind: spec
    for spec in (
        TrainerSpec(
            kind="reward",
            config_class="training.config:RewardModelConfig",
            train="training.reward:train_reward_model",
            title="Reward model",
            data="preference",
        ),
        TrainerSpec(
            kind="ppo",
            config_class="training.ppo.config:PPOConfig",
            train="training.ppo.trainer:train_ppo_run",
            title="PPO",
            data="prompts",
            model_paths=("reward_model_path", "reference_path"),
            required_model_paths=("reward_model_path",),
            multi_gpu=False,  # one device: the rollout, scoring and update share it
        ),
        TrainerSpec(
            kind="dpo",
            config_class="training.dpo:DPOConfig",
            train="training.dpo:train_dpo_run",
            title="DPO",
            data="preference",
        ),
    )
}


def get_trainer(kind: str) -> TrainerSpec:
    """Return the spec of `kind`; raise ConfigError naming the kinds there are."""
    if kind not in TRAINERS:
        raise ConfigError(
            "kind",
            f"No trainer is available for runs of kind {kind!r}; available: {', '.join(available_kinds())}.",
        )
    return TRAINERS[kind]


def available_kinds() -> list[str]:
    """Return the kinds of training run, in the order of `TRAINERS`."""
    return list(TRAINERS)


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


# --- config fields, for forms -------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigField:
    """One user-settable field of a kind's config, as a form shows it."""

    name: str
    type: str  # "int", "float", "bool", "str", "choice"
    default: Any
    optional: bool  # None is allowed
    help: str
    choices: tuple[str, ...] = ()


def config_fields(spec: TrainerSpec) -> list[ConfigField]:
    """Return the config's fields that users set (all but output_dir), with defaults and docs."""
    cls = spec.load_config_class()
    docs = field_docs(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name in SET_BY_ARBITER or f.name.startswith("_"):
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        annotation = str(f.type)
        optional = "None" in annotation
        if f.name in cls.CHOICES:
            kind = "choice"
        elif "bool" in annotation:
            kind = "bool"
        elif "int" in annotation:
            kind = "int"
        elif "float" in annotation:
            kind = "float"
        else:
            kind = "str"
        out.append(
            ConfigField(
                f.name,
                kind,
                default,
                optional,
                docs.get(f.name, ""),
                tuple(cls.CHOICES.get(f.name, ())),
            )
        )
    return out


def field_docs(cls: type) -> dict[str, str]:
    """Return the docstring written under each field of a dataclass (PEP 257 attribute docstrings).

    A field redeclared without one keeps the docstring of the base class that declared it.
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is not object:
            docs.update(_own_field_docs(klass))
    return docs


def _own_field_docs(cls: type) -> dict[str, str]:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs = {}
    for node, after in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


# --- one run, in this process ------------------------------------------------------------------


@dataclass
class RunSpec:
    """Everything a training process needs, as plain JSON (written for `training.launch`)."""

    kind: str
    config: dict[str, Any]
    dataset_file: str  # JSON Lines, one row of `dataset` per line
    base_model_path: str
    model_roots: list[str]
    dataset_hash: str = ""
    resume: bool = False
    stop_file: str = ""  # when this file exists, the run stops at the next step (and checkpoints)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def train_in_process(
    spec: TrainerSpec,
    config: Any,
    *,
    dataset: Sequence[dict[str, Any]],
    base_model_path: str,
    model_roots: Sequence[str | os.PathLike[str]],
    dataset_hash: str,
    resume: bool,
    on_step: OnStep | None,
    should_stop: ShouldStop | None,
) -> dict[str, Any]:
    """Run the kind's training function here; return its outcome (see `outcome_of`)."""
    result = spec.load_train()(
        config,
        dataset=dataset,
        base_model_path=base_model_path,
        model_roots=list(model_roots),
        dataset_hash=dataset_hash,
        on_step=on_step,
        should_stop=should_stop,
        resume_from_checkpoint=True if resume else None,
    )
    return outcome_of(result)


def outcome_of(result: Any) -> dict[str, Any]:
    """Return a training result as plain JSON: status, steps, metrics, artifact paths, counts."""

    def path(value: Any) -> str | None:
        return None if value is None else str(value)

    outcome = {
        "status": str(result.status),
        "global_step": int(result.global_step),
        "total_steps": int(result.total_steps),
        "metrics": {k: float(v) for k, v in (result.metrics or {}).items()},
        "artifact_dir": path(getattr(result, "artifact_dir", None)),
        "checkpoint_dir": path(getattr(result, "checkpoint_dir", None)),
    }
    details: dict[str, Any] = {}
    for name in ("counts", "samples_per_second", "train_runtime", "tokenizer_changes"):
        if getattr(result, name, None) is not None:
            details[name] = getattr(result, name)
    length = getattr(result, "length", None)
    if isinstance(length, dict):
        details["length"] = {
            k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
            for k, v in length.items()
        }
    outcome["details"] = json.loads(json.dumps(details, default=str))
    return outcome


# --- one run, across processes with accelerate ---------------------------------------------------


def accelerate_command(
    spec_file: str | os.PathLike[str], *, num_processes: int, cpu: bool
) -> list[str]:
    """Return the `accelerate launch` command line that trains the spec in `num_processes` processes."""
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which(
        "accelerate"
    )
    head = (
        [accelerate, "launch"]
        if accelerate
        else [sys.executable, "-m", "accelerate.commands.launch"]
    )
    return [
        *head,
        "--num_processes", str(num_processes),
        "--num_machines", "1",
        "--mixed_precision", "no",  # the run's config decides precision (TrainingArguments)
        "--dynamo_backend", "no",
        *(["--cpu"] if cpu else []),
        "-m", "training.launch", str(spec_file),
    ]  # fmt: skip


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM the launched trainer when the worker that started it dies (kill -9)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def launch_with_accelerate(
    run_spec: RunSpec,
    *,
    spec_file: str | os.PathLike[str],
    num_processes: int,
    on_step: OnStep | None,
    should_stop: ShouldStop | None,
    on_output: Callable[[str], None] | None = None,
    cpu: bool | None = None,
    poll_seconds: float = 1.0,
) -> dict[str, Any]:
    """Train `run_spec` with `accelerate launch` and return its outcome; raise LaunchError if it fails.

    The main process prints one `@arbiter {json}` line per event (step, result, error); every
    other line of output goes to `on_output`. `should_stop` is polled while waiting; when it
    returns True the stop file is created and the trainer stops at its next step.
    """
    if cpu is None:
        import torch

        cpu = not torch.cuda.is_available()
    if not run_spec.stop_file:
        run_spec.stop_file = str(Path(spec_file).with_suffix(".stop"))
    Path(run_spec.stop_file).unlink(missing_ok=True)
    Path(spec_file).write_text(run_spec.to_json())
    command = accelerate_command(spec_file, num_processes=num_processes, cpu=cpu)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        bufsize=1,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, name="accelerate-output", daemon=True).start()
    outcome: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    tail: deque[str] = deque(maxlen=40)
    stop_sent = False
    try:
        while True:
            try:
                line = lines.get(timeout=poll_seconds)
            except queue.Empty:
                line = ""
            if line is None:
                break
            if line.startswith(EVENT_PREFIX):
                event = json.loads(line[len(EVENT_PREFIX) :])
                if event["event"] == "step" and on_step is not None:
                    on_step(int(event["step"]), int(event["total"]), event["metrics"])
                elif event["event"] == "result":
                    outcome = event["outcome"]
                elif event["event"] == "error":
                    error = event
            elif line:
                tail.append(line)
                if on_output is not None:
                    on_output(line)
            if not stop_sent and should_stop is not None and should_stop():
                Path(run_spec.stop_file).touch()
                stop_sent = True
        code = proc.wait()
    except BaseException:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    finally:
        Path(run_spec.stop_file).unlink(missing_ok=True)
    if error is not None:
        raise LaunchError(f"{error['type']}: {error['message']}")
    if code != 0 or outcome is None:
        shown = "\n".join(list(tail)[-15:])
        raise LaunchError(
            f"accelerate launch exited with code {code} and no result. Last output:\n{shown}"
        )
    return outcome
