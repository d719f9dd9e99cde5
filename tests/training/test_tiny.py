"""Tiny models are built locally from a config, deterministically."""

import json

import pytest

pytestmark = pytest.mark.training
pytest.importorskip("trl")


def test_builds_a_tiny_lm_and_reward_base(tiny_models):
    """Both folders hold safetensors weights, a config and a tokenizer with distinct pad/EOS."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    for folder in (tiny_models.causal_lm, tiny_models.reward_base):
        assert (folder / "model.safetensors").is_file()
        assert not (folder / "pytorch_model.bin").exists()
    tokenizer = AutoTokenizer.from_pretrained(tiny_models.reward_base, local_files_only=True)
    assert tokenizer.pad_token == "<pad>" and tokenizer.eos_token == "<eos>"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.chat_template
    assert tokenizer.decode(tokenizer("Please, the cat likes a red box.")["input_ids"]) == (
        "Please, the cat likes a red box."
    )
    lm = AutoModelForCausalLM.from_pretrained(tiny_models.causal_lm, local_files_only=True)
    rm = AutoModelForSequenceClassification.from_pretrained(
        tiny_models.reward_base, local_files_only=True
    )
    assert 100_000 <= sum(p.numel() for p in lm.parameters()) <= 1_000_000
    assert rm.config.num_labels == 1
    assert json.loads((tiny_models.reward_base / "config.json").read_text())["id2label"] == {
        "0": "reward"
    }


def test_same_seed_gives_identical_files(tiny_models, tmp_path):
    """Building again with the same seed writes byte-identical weights and tokenizer."""
    from training.tiny import build_tiny_models

    again = build_tiny_models(tmp_path, seed=0)
    for name in ("model.safetensors", "tokenizer.json"):
        assert (again.reward_base / name).read_bytes() == (
            tiny_models.reward_base / name
        ).read_bytes()
        assert (again.causal_lm / name).read_bytes() == (tiny_models.causal_lm / name).read_bytes()
