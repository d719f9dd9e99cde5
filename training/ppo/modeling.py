"""The policy, reference and value models of a PPO run: forward passes, sampling config, setup.

torch and transformers are imported inside the functions that use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from training.formatting import DEFAULT_CHAT_TEMPLATE, FormatError

if TYPE_CHECKING:
    import torch
    from torch import nn
    from transformers import GenerationConfig

PAD_TOKEN = "<|pad|>"


def ppo_generation_config(
    *, temperature: float, response_length: int, stop_ids: Sequence[int], pad_id: int
) -> GenerationConfig:
    """Return a pure sampling config: temperature only (no top-k, top-p or penalties).

    The log-probabilities are recomputed with a plain forward pass divided by the same
    temperature, which only matches sampling that applies nothing else. Pass it to
    `generate` with `use_model_defaults=False`, or the model's own defaults fill in.
    """
    from transformers import GenerationConfig

    return GenerationConfig(
        do_sample=True,
        temperature=temperature,
        top_k=0,
        top_p=1.0,
        max_new_tokens=response_length,
        min_new_tokens=0,
        eos_token_id=list(stop_ids),
        pad_token_id=pad_id,
    )


def position_ids_for(attention_mask: torch.Tensor) -> torch.Tensor:
    """Return position ids counting only real tokens (left padding gets 0), as `generate` does."""
    return (attention_mask.long().cumsum(1) - 1).clamp(min=0)


def forward_logprobs(
    model: nn.Module,
    query_responses: torch.Tensor,
    attention_mask: torch.Tensor,
    context_length: int,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (log-probs of the response tokens, entropy per position), both at `temperature`.

    The entropy is computed without gradient: it is only reported.
    """
    logits = model(
        input_ids=query_responses,
        attention_mask=attention_mask,
        position_ids=position_ids_for(attention_mask),
        use_cache=False,
    ).logits
    logits = logits[:, context_length - 1 : -1].float() / temperature
    all_logprobs = logits.log_softmax(dim=-1)
    responses = query_responses[:, context_length:]
    logprobs = all_logprobs.gather(-1, responses.unsqueeze(-1)).squeeze(-1)
    detached = all_logprobs.detach()
    entropy = -(detached.exp() * detached).sum(-1)
    return logprobs, entropy


def forward_values(
    value_model: nn.Module,
    query_responses: torch.Tensor,
    attention_mask: torch.Tensor,
    context_length: int,
) -> torch.Tensor:
    """Return the value of the state before each response token: the reward model's score
    head applied to every hidden state of its backbone."""
    backbone = getattr(value_model, value_model.base_model_prefix)
    hidden = backbone(
        input_ids=query_responses,
        attention_mask=attention_mask,
        position_ids=position_ids_for(attention_mask),
        use_cache=False,
    ).last_hidden_state
    return value_head(value_model)(hidden[:, context_length - 1 : -1]).squeeze(-1).float()


def disable_dropout(model: nn.Module) -> None:
    """Turn every dropout of `model` off, so that rollout and update compute the same log-probs."""
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        # Attention implementations that read a float rate (Llama, Qwen, Mistral, ...).
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0
    for key, value in vars(model.config).items():
        if "dropout" in key and isinstance(value, float):
            setattr(model.config, key, 0.0)


def value_head(model: Any) -> nn.Linear:
    """Return the one-output linear score head of a reward model, which the values come from."""
    from torch import nn

    head = getattr(model, "score", None)
    if not isinstance(head, nn.Linear):
        head = getattr(model, "classifier", None)
    if not isinstance(head, nn.Linear) or head.out_features != 1:
        raise ValueError(
            f"The reward model ({type(model).__name__}) has no one-output linear score head to "
            "initialize the value model from. Use a decoder-style reward model "
            "(AutoModelForSequenceClassification with num_labels=1, e.g. one trained by Arbiter "
            "from the policy's base model)."
        )
    return head


def prepare_policy_tokenizer(tokenizer: Any) -> list[str]:
    """Give the policy tokenizer a chat template and a pad token distinct from EOS.

    A pad token equal to EOS would make padding indistinguishable from a real end of reply.
    """
    changes: list[str] = []
    if tokenizer.eos_token is None:
        raise FormatError(
            "The policy tokenizer has no EOS token, so a response can never end. Set one "
            "(tokenizer.eos_token = ...) and save the tokenizer with the policy."
        )
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
        changes.append(f"pad_token {PAD_TOKEN!r} added (distinct from the EOS token)")
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
        changes.append("chat_template set to Arbiter's plain 'Role: content' template")
    return changes


def resize_embeddings(model: Any, size: int) -> None:
    """Grow the vocabulary to `size`, new rows set to the mean of the old ones.

    Deterministic (unlike the random initialization of `resize_token_embeddings`), so a
    resumed run rebuilds exactly the same reference model.
    """
    import torch

    old = model.get_input_embeddings().weight.shape[0]
    if old >= size:
        return
    model.resize_token_embeddings(size, mean_resizing=False)
    with torch.no_grad():
        for layer in (model.get_input_embeddings(), model.get_output_embeddings()):
            if layer is not None:
                layer.weight[old:] = layer.weight[:old].mean(dim=0)
                if getattr(layer, "bias", None) is not None:
                    layer.bias[old:] = layer.bias[:old].mean()


__all__ = [
    "PAD_TOKEN",
    "disable_dropout",
    "forward_logprobs",
    "forward_values",
    "position_ids_for",
    "ppo_generation_config",
    "prepare_policy_tokenizer",
    "resize_embeddings",
    "value_head",
]
