"""The one checkpoint finder every kind of run uses: newest complete `checkpoint-N` by step."""

from training.checkpoints import (
    PPO_STATE,
    TRAINER_STATE,
    checkpoint_step,
    checkpoints,
    last_checkpoint,
)


def make(output_dir, name, state=None):
    folder = output_dir / "checkpoints" / name
    folder.mkdir(parents=True)
    if state:
        (folder / state).write_text("{}")
    return folder


def test_the_newest_checkpoint_is_the_highest_step_not_the_latest_name(tmp_path):
    """checkpoint-10 is newer than checkpoint-9; either kind's state file marks a checkpoint."""
    make(tmp_path, "checkpoint-9", TRAINER_STATE)
    ten = make(tmp_path, "checkpoint-10", PPO_STATE)
    assert last_checkpoint(tmp_path) == ten
    assert [checkpoint_step(p) for p in checkpoints(tmp_path)] == [9, 10]


def test_folders_without_their_state_and_other_names_are_not_checkpoints(tmp_path):
    """A save cut short (no state file), a `.partial` folder, a file and a stray name are skipped;
    with `state_files=None` every checkpoint-N folder counts, as transformers' Trainer has it."""
    three = make(tmp_path, "checkpoint-3", TRAINER_STATE)
    five = make(tmp_path, "checkpoint-5")
    make(tmp_path, "checkpoint-7.partial", PPO_STATE)
    make(tmp_path, "checkpoint-x", TRAINER_STATE)
    (tmp_path / "checkpoints" / "checkpoint-8").write_text("not a folder")
    assert last_checkpoint(tmp_path) == three
    assert last_checkpoint(tmp_path, state_files=(PPO_STATE,)) is None
    assert last_checkpoint(tmp_path, state_files=None) == five


def test_no_checkpoints_folder_means_no_checkpoint(tmp_path):
    """A run that never saved has no checkpoint, and a name that is not checkpoint-N has no step."""
    assert last_checkpoint(tmp_path / "missing") is None
    assert checkpoints(tmp_path) == []
    assert checkpoint_step(None) is None
    assert checkpoint_step(tmp_path / "model") is None
    assert checkpoint_step(tmp_path / "checkpoint-12") == 12
