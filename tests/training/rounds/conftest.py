"""Fixtures for the next-round tests: model folders under per-test roots, tiny models, an eager worker."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def model_folder() -> Callable[..., Path]:
    """Return a function that writes a model folder (its config.json only) of the given architecture."""

    def make(path: Path, architecture: str = "LlamaForCausalLM") -> Path:
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps({"architectures": [architecture], "model_type": "llama"}))
        return path

    return make


@pytest.fixture
def roots(settings, tmp_path):
    """Point the model roots at tmp_path/models and the training runs' folder at tmp_path/training."""
    settings.ARBITER_MODEL_ROOTS = [tmp_path / "models"]
    settings.ARBITER_TRAINING_DIR = tmp_path / "training"
    (tmp_path / "models").mkdir()
    return tmp_path


@pytest.fixture
def tiny_root(tiny_models) -> Path:
    """Return the folder holding the session's tiny causal LM and reward base (tiny-causal-lm, tiny-reward-base)."""
    return tiny_models.causal_lm.parent


@pytest.fixture
def eager(settings):
    """Run Celery tasks in the calling process, as the worker would."""
    from config.celery import app

    settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False
