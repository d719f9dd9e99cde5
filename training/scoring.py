"""Score replies with a trained reward model. No Django here.

The input layout is the one the model was trained on (`training.formatting`): the
conversation rendered with the saved chat template, EOS appended where the tokenizer does not
add it, truncated from the front at the training `max_length`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from training.formatting import (
    appends_eos,
    check_messages,
    conversation_text,
    encode,
    prepare_tokenizer,
    truncate_left,
)
from training.model_paths import local_model_dir, resolve_model_path

Pair = tuple[Sequence[dict[str, str]], str]


class RewardScorer:
    """A loaded reward model that scores (prompt messages, reply) pairs in batches."""

    def __init__(
        self, model: Any, tokenizer: Any, *, max_length: int, batch_size: int = 16
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self._add_eos = not appends_eos(tokenizer)
        self._special = frozenset(tokenizer.all_special_ids)

    def text(self, prompt: Sequence[dict[str, str]], response: str) -> str:
        """Return the exact text the model reads for `response` to `prompt` (also valid for a pipeline)."""
        messages = check_messages(list(prompt), "prompt", allow_empty=True)
        return conversation_text(
            self.tokenizer,
            messages + [{"role": "assistant", "content": response}],
            add_eos=self._add_eos,
        )

    def score(self, pairs: Iterable[Pair], *, batch_size: int | None = None) -> list[float]:
        """Return one reward per (prompt messages, response text) pair, in input order."""
        ids = [
            truncate_left(
                encode(self.tokenizer, self.text(prompt, response)), self.max_length, self._special
            )
            for prompt, response in pairs
        ]
        size = batch_size or self.batch_size
        # Batch similar lengths together so little compute goes to padding.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        scores = [0.0] * len(ids)
        device = next(self.model.parameters()).device
        pad_id = self.tokenizer.pad_token_id
        with torch.inference_mode():
            for start in range(0, len(order), size):
                b_index = order[start : start + size]
                b_len = max(len(ids[i]) for i in b_index)
                b_ids = torch.full((len(b_index), b_len), pad_id, dtype=torch.long)
                b_mask = torch.zeros((len(b_index), b_len), dtype=torch.long)
                for row, i in enumerate(b_index):  # right padding, as in training
                    b_ids[row, : len(ids[i])] = torch.tensor(ids[i])
                    b_mask[row, : len(ids[i])] = 1
                logits = self.model(
                    input_ids=b_ids.to(device), attention_mask=b_mask.to(device)
                ).logits
                for row, i in enumerate(b_index):
                    scores[i] = float(logits[row, 0])
        return scores


def load_scorer(
    path: str | os.PathLike[str],
    *,
    roots: Iterable[str | os.PathLike[str]] | None = None,
    max_length: int | None = None,
    batch_size: int = 16,
    device: str = "cpu",
) -> RewardScorer:
    """Load a reward model saved by `train_reward_model` (or any one-label classifier).

    `max_length` defaults to the one it was trained with (`arbiter_reward.json`), else to
    the tokenizer's limit. With `roots`, the path must lie under one of them.
    """
    model_dir = (
        resolve_model_path(path, roots=roots) if roots is not None else local_model_dir(path)
    )
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    prepare_tokenizer(tokenizer)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, local_files_only=True).to(
        device
    )
    if model.config.num_labels != 1:
        raise ValueError(
            f"{model_dir} is a classifier with {model.config.num_labels} labels; a reward model has one."
        )
    if max_length is None:
        summary = Path(model_dir) / "arbiter_reward.json"
        if summary.is_file():
            max_length = int(json.loads(summary.read_text())["max_length"])
        else:
            limit = getattr(model.config, "max_position_embeddings", None) or 512
            max_length = min(int(tokenizer.model_max_length), int(limit))
    return RewardScorer(model, tokenizer, max_length=max_length, batch_size=batch_size)
