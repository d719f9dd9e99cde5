"""Fixtures for the training tests: tiny models built locally, nothing from a hub."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers / huggingface_hub are imported
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


def pytest_configure(config):
    # Registered in pyproject too; repeated here so the folder runs on its own.
    config.addinivalue_line(
        "markers", "training: trains or loads models (needs the training extra)"
    )


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Build the tiny causal LM and reward base once per session."""
    pytest.importorskip("trl")
    from training.tiny import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture
def training_settings(settings, tiny_models, tmp_path):
    """Model roots holding the tiny models, a fresh training folder, a slow heartbeat (see
    `support.apply_training_settings`)."""
    from .support import apply_training_settings

    return apply_training_settings(settings, tiny_models, tmp_path)


@pytest.fixture(scope="session")
def polite_run(tiny_models, tmp_path_factory):
    """Train the tiny reward model once on the polite-vs-blunt preference (shared by tests)."""
    from training.config import RewardModelConfig
    from training.reward import train_reward_model
    from training.tiny import polite_preferences

    steps = []
    config = RewardModelConfig(
        output_dir=str(tmp_path_factory.mktemp("polite")),
        learning_rate=3e-3,
        max_steps=40,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        eval_fraction=0.25,
        eval_steps=20,
        logging_steps=5,
        save_steps=100,
        max_length=64,
        seed=0,
    )
    result = train_reward_model(
        config,
        dataset=polite_preferences(480, seed=1),
        base_model_path=tiny_models.reward_base,
        dataset_hash="sha256:polite-480",
        on_step=lambda step, total, metrics: steps.append((step, total, metrics)),
    )
    return result, steps, config
