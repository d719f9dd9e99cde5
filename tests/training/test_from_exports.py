"""Exported files train as they are: TRL's RewardTrainer and DPOTrainer, two steps each, on
tiny local models, straight from Arbiter's JSONL and Parquet exports of a dataset snapshot."""

import math

import pytest

from annotation.exports import write_export
from annotation.services.datasets import dataset_build, dataset_create
from annotation.services.serving import assignment_lease_next, judgment_submit

pytestmark = [pytest.mark.training, pytest.mark.django_db]


@pytest.fixture
def ready_dataset(make_campaign, annotator, annotator2, manager):
    """A dataset snapshot built from real judgments made through the serving services."""
    campaign = make_campaign(items=12, overlap=2, annotators=[annotator, annotator2])
    for user in (annotator, annotator2):
        while (a := assignment_lease_next(campaign_id=campaign.pk, annotator=user)) is not None:
            first = a.item.item_responses.get(position=0).response_id  # both prefer the first reply
            judgment_submit(assignment_id=a.pk, annotator=user, answer={
                "outcome": "preferred", "preferred_response_id": first, "strength": 2})
    dataset = dataset_create(campaign=campaign, method="majority", created_by=manager)
    dataset = dataset_build(dataset_id=dataset.pk)
    assert dataset.status == "ready", dataset.error
    return dataset


def _load(path, fmt):
    from datasets import load_dataset

    return load_dataset("json" if fmt == "jsonl" else "parquet", data_files=str(path), split="train")


def _changed(model, before) -> bool:
    import torch

    return any(not torch.equal(b, p.detach()) for b, p in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_reward_trainer_two_steps_from_the_preference_export(ready_dataset, tiny_models, tmp_path, fmt):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    data = _load(write_export(ready_dataset, "preference", fmt, tmp_path / f"pref.{fmt}"), fmt)
    assert len(data) == 12 and {"prompt", "chosen", "rejected", "margin"} <= set(data.column_names)
    assert data[0]["chosen"][0]["role"] == "assistant"
    tokenizer = AutoTokenizer.from_pretrained(tiny_models.reward_base)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_models.reward_base, num_labels=1)
    before = [p.detach().clone() for p in model.parameters()]
    args = RewardConfig(output_dir=str(tmp_path / "rm"), max_steps=2, per_device_train_batch_size=4,
                        learning_rate=1e-3, report_to="none", bf16=False, gradient_checkpointing=False,
                        save_strategy="no", logging_steps=1, use_cpu=True)
    result = RewardTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer).train()
    assert result.global_step == 2 and math.isfinite(result.training_loss)
    assert _changed(model, before)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_dpo_trainer_two_steps_from_the_preference_export(ready_dataset, tiny_models, tmp_path, fmt):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    data = _load(write_export(ready_dataset, "preference", fmt, tmp_path / f"pref.{fmt}"), fmt)
    tokenizer = AutoTokenizer.from_pretrained(tiny_models.causal_lm)
    model = AutoModelForCausalLM.from_pretrained(tiny_models.causal_lm)
    before = [p.detach().clone() for p in model.parameters()]
    args = DPOConfig(output_dir=str(tmp_path / "dpo"), max_steps=2, per_device_train_batch_size=4,
                     learning_rate=1e-3, report_to="none", bf16=False, gradient_checkpointing=False,
                     save_strategy="no", logging_steps=1, use_cpu=True)
    result = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer).train()
    assert result.global_step == 2 and math.isfinite(result.training_loss)
    assert _changed(model, before)


def test_implicit_and_kto_exports_load_in_the_shapes_trl_expects(ready_dataset, tmp_path):
    implicit = _load(write_export(ready_dataset, "implicit", "jsonl", tmp_path / "implicit.jsonl"), "jsonl")
    row = implicit[0]
    assert "prompt" not in implicit.column_names
    assert row["chosen"][:-1] == row["rejected"][:-1] and row["chosen"][-1]["role"] == "assistant"
    kto = _load(write_export(ready_dataset, "kto", "parquet", tmp_path / "kto.parquet"), "parquet")
    assert {"prompt", "completion", "label"} <= set(kto.column_names)
    assert sorted(set(kto["label"])) == [False, True]
