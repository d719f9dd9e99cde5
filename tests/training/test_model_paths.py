"""Base models load only from local folders under the configured roots."""

import re

import pytest

from training.model_paths import ModelPathError, local_model_dir, resolve_model_path

pytestmark = pytest.mark.training


@pytest.fixture
def layout(tmp_path):
    root = tmp_path / "models"
    inside = root / "org" / "tiny"
    inside.mkdir(parents=True)
    (inside / "config.json").write_text("{}")
    outside = tmp_path / "elsewhere" / "model"
    outside.mkdir(parents=True)
    (outside / "config.json").write_text("{}")
    return root, inside, outside


def test_accepts_a_model_folder_under_a_root(layout):
    """A folder with config.json under a root resolves to its real path."""
    root, inside, _ = layout
    assert resolve_model_path(str(inside), roots=[root]) == inside.resolve()
    assert resolve_model_path(inside, roots=[layout[2], root]) == inside.resolve()


def test_refuses_a_path_outside_the_roots(layout):
    """A folder outside every root is refused, with the roots listed."""
    root, _, outside = layout
    with pytest.raises(
        ModelPathError, match=re.escape(f"is outside the model roots ({root.resolve()})")
    ):
        resolve_model_path(outside, roots=[root])


def test_refuses_dotdot_escapes(layout):
    """`..` is resolved before the check."""
    root, _, outside = layout
    sneaky = root / ".." / "elsewhere" / "model"
    with pytest.raises(
        ModelPathError, match=re.escape(f"(resolves to '{outside.resolve()}') is outside")
    ):
        resolve_model_path(sneaky, roots=[root])


def test_refuses_a_symlink_pointing_outside(layout):
    """A symlink inside a root that points outside it is refused."""
    root, _, outside = layout
    link = root / "link"
    link.symlink_to(outside)
    with pytest.raises(ModelPathError, match="is outside the model roots"):
        resolve_model_path(link, roots=[root])


def test_refuses_hub_ids(layout):
    """Something that looks like a hub id is refused: Arbiter never downloads."""
    root, _, _ = layout
    for hub_id in ("gpt2", "Qwen/Qwen2.5-0.5B-Instruct"):
        with pytest.raises(
            ModelPathError,
            match=re.escape(
                f"{hub_id!r} looks like a Hugging Face Hub id; Arbiter never downloads models."
            ),
        ):
            resolve_model_path(hub_id, roots=[root])
    with pytest.raises(ModelPathError, match="looks like a Hugging Face Hub id"):
        local_model_dir("sentence-transformers/all-MiniLM-L6-v2")


def test_refuses_missing_relative_and_non_model_paths(layout, tmp_path):
    """Non-existent, relative and config-less paths each get their own error."""
    root, inside, _ = layout
    with pytest.raises(ModelPathError, match=re.escape("does not exist. Check the path")):
        resolve_model_path(root / "nope", roots=[root])
    with pytest.raises(ModelPathError, match=re.escape("The model path './models/x' is relative")):
        resolve_model_path("./models/x", roots=[root])
    (inside / "config.json").unlink()
    with pytest.raises(ModelPathError, match=re.escape("is not a model folder (no config.json)")):
        resolve_model_path(inside, roots=[root])


def test_refuses_when_no_roots_are_configured(layout):
    """Without roots nothing loads, and the message says which setting to set."""
    _, inside, _ = layout
    with pytest.raises(
        ModelPathError, match=re.escape("No model roots are configured") + ".*ARBITER_MODEL_ROOTS"
    ):
        resolve_model_path(inside, roots=[])
    with pytest.raises(ModelPathError, match="non-empty path"):
        resolve_model_path("", roots=[inside])
