"""Generate candidate replies from local checkpoints, for the next round of comparisons. No Django.

`generate_responses` loads each checkpoint once, renders every prompt the way the policy was
trained on it (`prompt_text`), left-pads the prompts, samples K replies per prompt in batches
with the KV cache, cuts each reply at its first EOS and reports tokens/s per checkpoint.

Prompt layout (shared with `training.dpo`, so a DPO-trained policy is sampled on exactly the
text it was trained on):

    chat prompt  -> the tokenizer's chat template up to where the assistant's reply begins
    plain string -> the string itself
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.config import ConfigError
from training.formatting import check_messages, encode, prepare_tokenizer
from training.model_paths import local_model_dir, resolve_model_path

PromptInput = str | Sequence[dict[str, str]]
CheckpointInput = str | os.PathLike[str] | tuple[str, str | os.PathLike[str]]

_SENTINEL = "\u2063ARBITER-REPLY\u2063"


@dataclass(frozen=True)
class Sample:
    """One generated reply."""

    checkpoint: str  # the checkpoint's label
    index: int  # 0..K-1 among this checkpoint's samples for the prompt
    text: str
    tokens: int  # generated tokens, the EOS included when there is one
    finished: bool  # ended with EOS (False: cut at max_new_tokens)


@dataclass
class PromptGenerations:
    """The replies generated for one prompt, checkpoint by checkpoint."""

    prompt: PromptInput
    samples: list[Sample] = field(default_factory=list)


@dataclass(frozen=True)
class CheckpointStats:
    """Throughput of one checkpoint over all prompts."""

    label: str
    path: str
    samples: int
    new_tokens: int
    finished: int  # samples that ended with EOS
    load_seconds: float
    generate_seconds: float
    tokens_per_second: float


class Generations(list[PromptGenerations]):
    """The result of `generate_responses`: one entry per prompt, in input order, plus `stats`."""

    def __init__(self, items: Iterable[PromptGenerations], stats: dict[str, CheckpointStats]):
        super().__init__(items)
        self.stats = stats


def generate_responses(
    prompts: Sequence[PromptInput],
    checkpoints: Sequence[CheckpointInput] | Mapping[str, str | os.PathLike[str]],
    *,
    k: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float = 1.0,
    batch_size: int = 16,
    seed: int = 0,
    model_roots: Iterable[str | os.PathLike[str]] | None = None,
    device: str | None = None,
) -> Generations:
    """Sample `k` replies per prompt from every checkpoint; return them per prompt.

    `checkpoints` are local model folders, given as paths (labelled by folder name), as
    `(label, path)` pairs or as a `{label: path}` mapping. With `model_roots`, every folder
    must lie under one of them. `temperature=0` decodes greedily (the K samples are then
    identical). The same seed gives the same samples for a checkpoint whatever the others are.
    """
    _check_arguments(
        prompts,
        k=k,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        batch_size=batch_size,
        seed=seed,
    )
    labelled = _label_checkpoints(checkpoints)
    # Resolve every path before loading anything: a bad one fails fast, before minutes of work.
    dirs = [
        (
            label,
            resolve_model_path(path, roots=model_roots)
            if model_roots is not None
            else local_model_dir(path),
        )
        for label, path in labelled
    ]

    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    results = [PromptGenerations(prompt=p) for p in prompts]
    stats: dict[str, CheckpointStats] = {}
    for label, model_dir in dirs:
        per_prompt, stat = _generate_one_checkpoint(
            label,
            model_dir,
            prompts,
            k=k,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            batch_size=batch_size,
            seed=seed,
            device=device,
        )
        for result, samples in zip(results, per_prompt, strict=True):
            result.samples.extend(samples)
        stats[label] = stat
    return Generations(results, stats)


def prompt_text(tokenizer: Any, prompt: PromptInput) -> str:
    """Return the text a policy continues for `prompt`: the chat up to the assistant's reply.

    A template that renders a generation prompt (`add_generation_prompt=True`) is used as is.
    One that ignores it (Arbiter's plain "Role: content" template) is rendered with an
    assistant turn holding a marker, and cut where the marker starts. Trailing spaces are left
    to the reply: byte-level tokenizers attach a space to the next word, so a prompt ending in
    a space would be tokenized unlike the same text inside a training conversation.
    """
    if isinstance(prompt, str):
        return prompt
    messages = check_messages(list(prompt), "prompt")
    with_header = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    plain = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    if with_header != plain:
        return with_header.rstrip(" ")
    marked = tokenizer.apply_chat_template(
        messages + [{"role": "assistant", "content": _SENTINEL}], tokenize=False
    )
    if _SENTINEL not in marked:
        return plain.rstrip(" ")
    return marked[: marked.index(_SENTINEL)].rstrip(" ")


def encode_prompt(tokenizer: Any, prompt: PromptInput) -> list[int]:
    """Return the token ids of `prompt_text(tokenizer, prompt)` (special tokens as in training)."""
    return encode(tokenizer, prompt_text(tokenizer, prompt))


def eos_token_ids(tokenizer: Any, model: Any | None = None) -> set[int]:
    """Return every id that ends a reply: the tokenizer's EOS and the model's generation EOS ids."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif isinstance(configured, list | tuple):
        ids.update(int(i) for i in configured)
    return ids


def cut_at_eos(ids: Sequence[int], eos_ids: set[int]) -> tuple[list[int], bool]:
    """Return the ids up to and including the first EOS, and whether there was one."""
    for position, token in enumerate(ids):
        if token in eos_ids:
            return list(ids[: position + 1]), True
    return list(ids), False


# -- one checkpoint -------------------------------------------------------------------------------


def _generate_one_checkpoint(
    label: str,
    model_dir: Path,
    prompts: Sequence[PromptInput],
    *,
    k: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    batch_size: int,
    seed: int,
    device: str,
) -> tuple[list[list[Sample]], CheckpointStats]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    # 1. Load the checkpoint once -------------------------------------------------------------
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    prepare_tokenizer(tokenizer)  # pad token and chat template where missing, as in training
    tokenizer.padding_side = "left"
    dtype = (
        torch.bfloat16
        if device.startswith("cuda") and torch.cuda.is_bf16_supported()
        else torch.float32
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, dtype=dtype).to(
        device
    )
    model.eval()
    load_seconds = time.perf_counter() - started
    eos_ids = eos_token_ids(tokenizer, model)
    pad_id = tokenizer.pad_token_id

    # 2. Rows: each prompt K times, batched by length so little compute goes to padding ------
    prompt_ids = [encode_prompt(tokenizer, p) for p in prompts]
    rows = sorted(
        ((i, s) for i in range(len(prompts)) for s in range(k)),
        key=lambda r: (len(prompt_ids[r[0]]), r),
    )
    sampling = temperature > 0
    options: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": sampling,
        "use_cache": True,
        "pad_token_id": pad_id,
        "eos_token_id": sorted(eos_ids) or None,
    }
    if sampling:
        options.update(temperature=temperature, top_p=top_p, top_k=0)
    else:  # silence the "temperature is set but do_sample=False" warnings of saved configs
        options.update(temperature=None, top_p=None, top_k=None)

    # 3. Generate ------------------------------------------------------------------------------
    set_seed(seed)
    out: dict[tuple[int, int], Sample] = {}
    new_tokens = finished = 0
    generate_seconds = 0.0
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            b_rows = rows[start : start + batch_size]
            b_len = max(len(prompt_ids[i]) for i, _ in b_rows)
            b_ids = torch.full((len(b_rows), b_len), pad_id, dtype=torch.long)
            b_mask = torch.zeros((len(b_rows), b_len), dtype=torch.long)
            for row, (i, _) in enumerate(b_rows):  # left padding: every prompt ends at column b_len
                ids = prompt_ids[i]
                b_ids[row, b_len - len(ids) :] = torch.tensor(ids, dtype=torch.long)
                b_mask[row, b_len - len(ids) :] = 1
            tick = time.perf_counter()
            b_out = model.generate(
                input_ids=b_ids.to(device), attention_mask=b_mask.to(device), **options
            )
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            generate_seconds += time.perf_counter() - tick
            for row, (i, s) in enumerate(b_rows):
                reply_ids, ended = cut_at_eos(b_out[row, b_len:].tolist(), eos_ids)
                text_ids = reply_ids[:-1] if ended else reply_ids
                # A byte-level model can write a NUL byte; PostgreSQL text cannot hold one.
                text = tokenizer.decode(text_ids, skip_special_tokens=True).replace("\x00", "\ufffd").strip()
                out[(i, s)] = Sample(
                    checkpoint=label, index=s, text=text, tokens=len(reply_ids), finished=ended
                )
                new_tokens += len(reply_ids)
                finished += ended

    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    per_prompt = [[out[(i, s)] for s in range(k)] for i in range(len(prompts))]
    stat = CheckpointStats(
        label=label,
        path=str(model_dir),
        samples=len(rows),
        new_tokens=new_tokens,
        finished=finished,
        load_seconds=load_seconds,
        generate_seconds=generate_seconds,
        tokens_per_second=new_tokens / generate_seconds if generate_seconds > 0 else 0.0,
    )
    return per_prompt, stat


# -- arguments ------------------------------------------------------------------------------------


def _check_arguments(
    prompts: Sequence[PromptInput],
    *,
    k: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    batch_size: int,
    seed: int,
) -> None:
    if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not prompts:
        raise ConfigError(
            "prompts", "`prompts` must be a non-empty list of strings or chat message lists."
        )
    for i, prompt in enumerate(prompts):
        if isinstance(prompt, str):
            if not prompt:
                raise ConfigError("prompts", f"`prompts[{i}]` is an empty string.")
            continue
        try:
            check_messages(prompt, f"prompts[{i}]")
        except ValueError as exc:
            raise ConfigError("prompts", f"`{exc}`.") from None
    for name, value, low in (
        ("k", k, 1),
        ("max_new_tokens", max_new_tokens, 1),
        ("batch_size", batch_size, 1),
        ("seed", seed, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(name, f"`{name}` must be an integer >= {low}, got {value!r}.")
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not 0 <= temperature <= 5
    ):
        raise ConfigError(
            "temperature",
            f"`temperature` must be a number from 0 to 5, got {temperature!r}. Use 0 for greedy decoding, "
            "0.7 to 1.0 for varied samples.",
        )
    if isinstance(top_p, bool) or not isinstance(top_p, int | float) or not 0 < top_p <= 1:
        raise ConfigError(
            "top_p", f"`top_p` must be > 0 and <= 1, got {top_p!r}. Use 1.0 to turn it off."
        )


def _label_checkpoints(
    checkpoints: Sequence[CheckpointInput] | Mapping[str, str | os.PathLike[str]],
) -> list[tuple[str, str | os.PathLike[str]]]:
    if isinstance(checkpoints, Mapping):
        labelled = [(str(label), path) for label, path in checkpoints.items()]
    elif isinstance(checkpoints, str | os.PathLike) or not isinstance(checkpoints, Sequence):
        raise ConfigError(
            "checkpoints",
            "`checkpoints` must be a list of model folders or a {label: folder} mapping.",
        )
    else:
        labelled = [
            (str(c[0]), c[1]) if isinstance(c, tuple) else (checkpoint_label(c), c)
            for c in checkpoints
        ]
    if not labelled:
        raise ConfigError("checkpoints", "`checkpoints` is empty: give at least one model folder.")
    seen: set[str] = set()
    for label, _ in labelled:
        if not label.strip():
            raise ConfigError("checkpoints", "A checkpoint label is empty.")
        if label in seen:
            raise ConfigError(
                "checkpoints",
                f"Two checkpoints have the label {label!r}; give (label, path) pairs with distinct labels.",
            )
        seen.add(label)
    return labelled


def checkpoint_label(path: str | os.PathLike[str]) -> str:
    """Return a readable label for a model folder: its name, or `run/model` for a run's artifacts."""
    p = Path(os.fspath(path))
    name = p.name or str(p)
    return f"{p.parent.name}/{name}" if name == "model" and p.parent.name else name


__all__ = [
    "CheckpointStats",
    "Generations",
    "PromptGenerations",
    "Sample",
    "checkpoint_label",
    "cut_at_eos",
    "encode_prompt",
    "eos_token_ids",
    "generate_responses",
    "prompt_text",
]
