"""Tiny models built locally from a config, for tests, demos and smoke runs. No Django here.

`build_tiny_models` trains a byte-level BPE tokenizer on a generated corpus and builds a tiny
Llama-style causal LM and a reward-model base (sequence classifier, one label) from a config:
nothing is downloaded, and the same seed gives byte-identical files.
`polite_preferences` makes a preference dataset with a known rule, to check that a reward
model learns.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

PAD, EOS, BOS, UNK = "<pad>", "<eos>", "<bos>", "<unk>"

_SUBJECTS = [
    "the cat",
    "my friend",
    "a student",
    "the teacher",
    "our team",
    "the robot",
    "a farmer",
    "the doctor",
    "my neighbour",
    "the pilot",
    "a child",
    "the manager",
]
_VERBS = [
    "likes",
    "needs",
    "found",
    "wants",
    "builds",
    "reads",
    "paints",
    "cleans",
    "moves",
    "opens",
    "fixes",
    "carries",
]
_OBJECTS = [
    "a red box",
    "the old map",
    "some water",
    "a long letter",
    "the blue door",
    "a small garden",
    "the new car",
    "a warm coat",
    "the heavy table",
    "a green apple",
    "the quiet room",
    "a paper kite",
]
_QUESTIONS = [
    "Where is {o}?",
    "Can you help me find {o}?",
    "What should {s} do with {o}?",
    "Why does {s} want {o}?",
    "How do I move {o}?",
    "Who {v} {o}?",
]
_POLITE = ["Please", "Thank you", "Kindly", "With pleasure", "Certainly, thank you"]
_BLUNT = ["No", "Whatever", "Figure it out", "Not my problem", "Stop asking"]


@dataclass(frozen=True)
class TinyModels:
    """Folders written by `build_tiny_models`; each holds the weights and the tokenizer."""

    causal_lm: Path
    reward_base: Path


def tiny_corpus(seed: int = 0, lines: int = 400) -> list[str]:
    """Return a generated English-like corpus covering the words of `polite_preferences`."""
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        s, v, o = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)
        kind = rng.randrange(4)
        if kind == 0:
            out.append(f"{s.capitalize()} {v} {o}.")
        elif kind == 1:
            out.append(rng.choice(_QUESTIONS).format(s=s, v=v, o=o))
        elif kind == 2:
            out.append(f"{rng.choice(_POLITE)}, {s} {v} {o}.")
        else:
            out.append(f"{rng.choice(_BLUNT)}. {s.capitalize()} {v} {o}.")
    out += ["User: Assistant: System:"] * 10
    return out


def build_tokenizer(seed: int = 0, vocab_size: int = 512):
    """Train a byte-level BPE tokenizer on `tiny_corpus`, with distinct pad, EOS, BOS and unk."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from training.formatting import DEFAULT_CHAT_TEMPLATE

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[PAD, EOS, BOS, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(tiny_corpus(seed), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        eos_token=EOS,
        bos_token=BOS,
        unk_token=UNK,
        model_max_length=512,
        model_input_names=["input_ids", "attention_mask"],
    )
    fast.chat_template = DEFAULT_CHAT_TEMPLATE
    return fast


def build_tiny_models(
    out_dir: str | Path, *, seed: int = 0, hidden_size: int = 64, layers: int = 2
) -> TinyModels:
    """Write a tiny causal LM and a tiny reward-model base (num_labels=1) under `out_dir`.

    Both are Llama-architecture (~100k parameters at the defaults), saved with
    `save_pretrained` as safetensors next to the tokenizer. Deterministic given `seed`.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as transformers_logging

    out = Path(out_dir)
    tokenizer = build_tokenizer(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    lm = LlamaForCausalLM(config)
    lm.generation_config.pad_token_id = tokenizer.pad_token_id
    lm_dir = out / "tiny-causal-lm"
    lm.save_pretrained(lm_dir, safe_serialization=True)
    tokenizer.save_pretrained(lm_dir)

    torch.manual_seed(seed)
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # "score.weight newly initialized" is the point here
    try:
        rm = AutoModelForSequenceClassification.from_pretrained(
            lm_dir,
            num_labels=1,
            id2label={0: "reward"},
            label2id={"reward": 0},
            local_files_only=True,
        )
    finally:
        transformers_logging.set_verbosity(verbosity)
    rm_dir = out / "tiny-reward-base"
    rm.save_pretrained(rm_dir, safe_serialization=True)
    tokenizer.save_pretrained(rm_dir)
    return TinyModels(causal_lm=lm_dir, reward_base=rm_dir)


def polite_preferences(n: int, *, seed: int = 0, margin: bool = False) -> list[dict]:
    """Return `n` TRL conversational preference rows where the chosen reply is the polite one.

    Both replies answer the same question with the same sentence; the chosen one opens with
    a polite phrase ("Please", "Thank you", ...) and the rejected one with a blunt one.
    """
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        s, v, o = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)
        question = rng.choice(_QUESTIONS).format(s=s, v=v, o=o)
        body = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}."
        row = {
            "prompt": [{"role": "user", "content": question}],
            "chosen": [{"role": "assistant", "content": f"{rng.choice(_POLITE)}, {body}"}],
            "rejected": [
                {"role": "assistant", "content": f"{rng.choice(_BLUNT)}. {body.capitalize()}"}
            ],
        }
        if margin:
            row["margin"] = float(rng.choice([0.0, 0.5, 1.0]))
        rows.append(row)
    return rows
