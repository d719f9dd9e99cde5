"""Run one training spec as a program: the entry `accelerate launch` starts in every process.

    accelerate launch --num_processes 4 -m training.launch /path/to/run-7/launch.json

The spec is `training.runner.RunSpec` as JSON (a file path, or the JSON itself). Every process
trains (accelerate's DDP/FSDP/DeepSpeed set-up comes from the launcher's environment); only the
main process reports, one line per event on stdout:

    @arbiter {"event": "step", "step": 10, "total": 40, "metrics": {...}}
    @arbiter {"event": "result", "outcome": {...}}
    @arbiter {"event": "error", "type": "ConfigError", "message": "..."}

A stop is asked for by creating the spec's `stop_file`; the processes agree on the step to stop
at (an all-reduce of the flag), so none of them waits forever on the others. No Django here.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from training.runner import EVENT_PREFIX, RunSpec, get_trainer, train_in_process


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def emit(event: dict[str, Any]) -> None:
    """Print an event line for the worker (main process only)."""
    if _rank() == 0:
        sys.stdout.write(EVENT_PREFIX + json.dumps(event) + "\n")
        sys.stdout.flush()


def _stop_agreed(stop_file: str) -> bool:
    """Return True when the stop file exists, the same answer in every process."""
    wanted = bool(stop_file) and _rank() == 0 and Path(stop_file).exists()
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return bool(stop_file) and Path(stop_file).exists()
    import torch

    device = (
        torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if dist.get_backend() == "nccl"
        else torch.device("cpu")
    )
    flag = torch.tensor([1 if wanted else 0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def read_rows(path: str) -> list[dict[str, Any]]:
    """Read the dataset rows (JSON Lines)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def run(spec: RunSpec) -> dict[str, Any]:
    """Train the spec in this process and return the outcome (see `training.runner.outcome_of`)."""
    trainer = get_trainer(spec.kind)
    config = trainer.build_config(spec.config)
    return train_in_process(
        trainer,
        config,
        dataset=read_rows(spec.dataset_file),
        base_model_path=spec.base_model_path,
        model_roots=spec.model_roots,
        dataset_hash=spec.dataset_hash,
        resume=spec.resume,
        on_step=lambda step, total, metrics: emit(
            {"event": "step", "step": step, "total": total, "metrics": metrics}
        ),
        should_stop=lambda: _stop_agreed(spec.stop_file),
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write(
            "usage: python -m training.launch SPEC.json  (or the spec's JSON itself)\n"
        )
        return 2
    text = args[0] if args[0].lstrip().startswith("{") else Path(args[0]).read_text()
    try:
        outcome = run(RunSpec.from_json(text))
    except Exception as exc:  # reported to the worker, which records it on the run
        emit({"event": "error", "type": type(exc).__name__, "message": str(exc)})
        raise
    emit({"event": "result", "outcome": outcome})
    return 0


if __name__ == "__main__":
    sys.exit(main())
