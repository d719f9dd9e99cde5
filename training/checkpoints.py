"""A run's checkpoints: where they are, which is the newest, what step each holds. No Django, no torch.

Every kind of run saves its resumable states as `<output_dir>/checkpoints/checkpoint-N`, N the
step. A transformers Trainer (reward model, DPO) writes `trainer_state.json` into each one;
Arbiter's PPO trainer writes `trainer_state.pt` and moves the folder into place only when it is
complete. A folder without its state file is what a crash during a save leaves behind.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

CHECKPOINTS = "checkpoints"
TRAINER_STATE = "trainer_state.json"  # what makes a folder a transformers Trainer checkpoint
PPO_STATE = "trainer_state.pt"  # what makes a folder a PPO checkpoint
ANY_STATE = (TRAINER_STATE, PPO_STATE)

_NAME = re.compile(r"^checkpoint-(\d+)$")  # the pattern transformers' Trainer uses


def checkpoint_step(path: str | os.PathLike[str] | None) -> int | None:
    """Return the step a `checkpoint-N` folder was saved at (None for another name or None)."""
    if path is None:
        return None
    match = _NAME.match(Path(path).name)
    return int(match.group(1)) if match else None


def checkpoints(
    output_dir: str | os.PathLike[str], *, state_files: Iterable[str] | None = ANY_STATE
) -> list[Path]:
    """Return the `checkpoint-N` folders under `<output_dir>/checkpoints`, oldest (lowest N) first.

    Only folders holding one of `state_files` count, so that a save cut short is never taken
    for a checkpoint; with None every `checkpoint-N` folder counts, as transformers'
    `get_last_checkpoint` (and so a Trainer's own resume) has it.
    """
    root = Path(output_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    wanted = None if state_files is None else tuple(state_files)
    found = [
        child
        for child in root.iterdir()
        if child.is_dir()
        and _NAME.match(child.name)
        and (wanted is None or any((child / name).is_file() for name in wanted))
    ]
    return sorted(found, key=lambda child: checkpoint_step(child) or 0)


def last_checkpoint(
    output_dir: str | os.PathLike[str], *, state_files: Iterable[str] | None = ANY_STATE
) -> Path | None:
    """Return the newest checkpoint of the run in `output_dir` (see `checkpoints`), or None."""
    found = checkpoints(output_dir, state_files=state_files)
    return found[-1] if found else None


__all__ = [
    "ANY_STATE",
    "CHECKPOINTS",
    "PPO_STATE",
    "TRAINER_STATE",
    "checkpoint_step",
    "checkpoints",
    "last_checkpoint",
]
