"""Turn conversations into the token ids a reward model reads. No Django here.

Training (`training.reward`) and scoring (`training.scoring`) both go through this module, so
a reward model sees the same text layout when it is scored as when it was trained:

    text = chat_template(prompt + [reply]) + EOS (unless the tokenizer appends it itself)
    ids  = tokenizer(text)                      # the tokenizer's own special tokens, e.g. [CLS]
    ids  = truncate_left(ids, max_length)       # keep a leading special token, cut from the front

The same `text` given to `transformers.pipeline("text-classification", model=path)` yields the
same ids, so a saved reward model scores the same there (up to truncation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

ROLES = ("system", "user", "assistant")

# Used when the base tokenizer has no chat template (BERT-style encoders, tiny test models).
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}: {{ message['content'] }}"
    "{% if not loop.last %}\n\n{% endif %}"
    "{% endfor %}"
    # A generation prompt ends at "Assistant:" with no trailing space: byte-level tokenizers
    # glue the space to the reply's first word, so a policy writes " reply" and the reward
    # model later reads exactly "Assistant: reply".
    "{% if add_generation_prompt %}\n\nAssistant:{% endif %}"
)


class FormatError(ValueError):
    """A conversation or tokenizer that cannot be turned into reward-model input."""


def prepare_tokenizer(tokenizer: Any) -> list[str]:
    """Give the tokenizer an EOS, a pad token and a chat template where it lacks them.

    Return what was changed, for the run's log and model card. TRL needs an EOS token (it
    fails with a TypeError without one) and a pad token distinct from padding-free input;
    BERT-style tokenizers have neither EOS nor a chat template, so `[SEP]` serves as EOS.
    """
    changes: list[str] = []
    if tokenizer.eos_token is None:
        if tokenizer.sep_token is not None:
            tokenizer.eos_token = tokenizer.sep_token
            changes.append(f"eos_token set to the sep token {tokenizer.sep_token!r}")
        else:
            raise FormatError(
                "The tokenizer has neither an EOS nor a SEP token. Add one (tokenizer.eos_token = ...) "
                "and save the tokenizer with the base model."
            )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
        changes.append(f"pad_token set to the eos token {tokenizer.eos_token!r}")
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
        changes.append("chat_template set to Arbiter's plain 'Role: content' template")
    return changes


def check_messages(value: Any, where: str, *, allow_empty: bool = False) -> list[dict[str, str]]:
    """Return `value` as a list of {role, content} messages or raise FormatError naming `where`."""
    if not isinstance(value, list) or (not value and not allow_empty):
        raise FormatError(
            f"{where}: must be a {'' if allow_empty else 'non-empty '}list of messages "
            f"({{'role': ..., 'content': ...}}), got {type(value).__name__}"
            + (" (empty)" if isinstance(value, list) else "")
        )
    messages = []
    for i, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise FormatError(f"{where}[{i}]: must be a dict with a string 'content'")
        if message.get("role") not in ROLES:
            raise FormatError(
                f"{where}[{i}]: role must be one of {', '.join(ROLES)}, got {message.get('role')!r}"
            )
        messages.append({"role": message["role"], "content": message["content"]})
    return messages


def appends_eos(tokenizer: Any) -> bool:
    """Return whether the tokenizer itself ends every encoding with its EOS token."""
    ids = tokenizer("x", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[-1] == tokenizer.eos_token_id


def conversation_text(
    tokenizer: Any, messages: Sequence[dict[str, str]], *, add_eos: bool | None = None
) -> str:
    """Render a conversation with the tokenizer's chat template, ending it with EOS.

    EOS is appended as text unless the tokenizer appends it itself (BERT's [SEP]), as TRL does
    for standard-format data: a decoder-only reward model reads its score at the last token.
    """
    text = tokenizer.apply_chat_template(list(messages), tokenize=False)
    if add_eos is None:
        add_eos = not appends_eos(tokenizer)
    if add_eos and not text.endswith(tokenizer.eos_token):
        text += tokenizer.eos_token
    return text


def encode(tokenizer: Any, text: str) -> list[int]:
    """Tokenize rendered text, adding the tokenizer's special tokens unless the text has a BOS."""
    bos = tokenizer.bos_token
    add_special = not (bos and text.startswith(bos))
    # verbose=False: a conversation over the model's limit is expected here; truncation follows.
    return list(tokenizer(text, add_special_tokens=add_special, verbose=False)["input_ids"])


def truncate_left(
    ids: list[int], max_length: int, special_ids: frozenset[int] | set[int]
) -> list[int]:
    """Cut tokens from the front of `ids` to fit `max_length`, keeping a leading special token.

    The end of a conversation holds the replies being compared; the front is the oldest
    context, so it is what goes. A leading [CLS] / BOS stays because encoders pool on it.
    """
    if len(ids) <= max_length:
        return ids
    head = 1 if ids and ids[0] in special_ids else 0
    return ids[:head] + ids[len(ids) - (max_length - head) :]
