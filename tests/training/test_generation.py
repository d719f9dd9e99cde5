"""generate_responses: K samples per prompt and checkpoint, cut at EOS, batching that changes nothing."""

import random

import pytest

pytestmark = pytest.mark.training
pytest.importorskip("trl")

from training.config import ConfigError  # noqa: E402
from training.model_paths import ModelPathError  # noqa: E402
from training.tiny import _OBJECTS  # noqa: E402

QUESTIONS = ["Where is {o}?", "Can you help me find {o}?"]


def ask(obj: str, template: int = 0) -> list[dict[str, str]]:
    return [{"role": "user", "content": QUESTIONS[template].format(o=obj)}]


@pytest.fixture(scope="module")
def answering_lm(tiny_models, tmp_path_factory):
    """The tiny causal LM fine-tuned for a few seconds to answer "Here is <object>." and then EOS.

    A freshly initialized tiny LM repeats one token and never ends; this one ends its replies and
    answers each prompt differently, which is what EOS cutting and batching need to be tested on.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.formatting import encode
    from training.generation import encode_prompt

    tokenizer = AutoTokenizer.from_pretrained(tiny_models.causal_lm)
    model = AutoModelForCausalLM.from_pretrained(tiny_models.causal_lm)
    rng = random.Random(0)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(150):
        rows = []
        for _ in range(16):
            obj = rng.choice(_OBJECTS)
            prompt = encode_prompt(tokenizer, ask(obj, rng.randrange(2)))
            rows.append((prompt, encode(tokenizer, f" Here is {obj}.") + [tokenizer.eos_token_id]))
        width = max(len(p) + len(r) for p, r in rows)
        b_ids = torch.full((len(rows), width), tokenizer.pad_token_id)
        b_labels = torch.full((len(rows), width), -100)
        b_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, (p, r) in enumerate(rows):
            b_ids[row, : len(p) + len(r)] = torch.tensor(p + r)
            b_labels[row, len(p) : len(p) + len(r)] = torch.tensor(r)
            b_mask[row, : len(p) + len(r)] = 1
        loss = model(input_ids=b_ids, attention_mask=b_mask, labels=b_labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    out = tmp_path_factory.mktemp("answering") / "answering-lm"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_k_samples_per_prompt_from_every_checkpoint(tiny_models, answering_lm):
    """Each prompt gets K samples from each checkpoint, labelled, in order; the seed fixes them."""
    from training.generation import generate_responses

    prompts = [ask("the old map"), ask("a red box", 1), "User: Hello"]
    run = dict(k=3, max_new_tokens=8, temperature=1.0, top_p=0.95, batch_size=4, seed=7)
    out = generate_responses(prompts, [answering_lm, ("base", tiny_models.causal_lm)], **run)

    assert len(out) == 3 and [g.prompt for g in out] == prompts
    for generated in out:
        assert [(s.checkpoint, s.index) for s in generated.samples] == [
            ("answering-lm", 0), ("answering-lm", 1), ("answering-lm", 2), ("base", 0), ("base", 1), ("base", 2),
        ]
        assert all(1 <= s.tokens <= 8 for s in generated.samples)
    assert set(out.stats) == {"answering-lm", "base"}
    base = out.stats["base"]
    assert base.samples == 9 and base.new_tokens == sum(s.tokens for g in out for s in g.samples[3:])
    assert base.tokens_per_second > 0 and base.path == str(tiny_models.causal_lm.resolve())

    again = generate_responses(prompts, {"base": tiny_models.causal_lm}, **run)
    assert [[s.text for s in g.samples] for g in again] == [[s.text for s in g.samples[3:]] for g in out]


def test_replies_stop_at_eos(answering_lm):
    """A reply ends at the first EOS (not kept in the text); one that runs out of tokens is marked unfinished."""
    from transformers import AutoTokenizer

    from training.formatting import encode
    from training.generation import generate_responses

    prompts = [ask(obj) for obj in _OBJECTS[:6]]
    out = generate_responses(prompts, [answering_lm], k=1, max_new_tokens=24, temperature=0.0, seed=0)
    tokenizer = AutoTokenizer.from_pretrained(answering_lm)
    for generated in out:
        sample = generated.samples[0]
        assert sample.finished, sample
        assert sample.text.startswith("Here is ") and sample.text.endswith(".")
        assert "<eos>" not in sample.text
        assert sample.tokens == len(encode(tokenizer, " " + sample.text)) + 1 < 24  # the reply, then EOS
    assert out.stats["answering-lm"].finished == 6

    cut = generate_responses(prompts[:2], [answering_lm], k=1, max_new_tokens=2, temperature=0.0, seed=0)
    assert [(g.samples[0].finished, g.samples[0].tokens) for g in cut] == [(False, 2), (False, 2)]
    assert all(full.samples[0].text.startswith(g.samples[0].text) for full, g in zip(out, cut, strict=False))
    assert all(0 < len(g.samples[0].text) < len("Here is") + 1 for g in cut)


def test_batched_greedy_output_equals_one_by_one(answering_lm):
    """Left padding with an attention mask: prompts of different lengths decode the same in a batch."""
    from training.generation import generate_responses

    prompts = [ask(obj, i % 2) for i, obj in enumerate(_OBJECTS[:8])]
    lengths = {len(p[0]["content"]) for p in prompts}
    assert len(lengths) > 3  # the batch really is padded
    batched = generate_responses(prompts, [answering_lm], k=2, max_new_tokens=16, temperature=0.0, batch_size=16)
    single = generate_responses(prompts, [answering_lm], k=1, max_new_tokens=16, temperature=0.0, batch_size=1)
    texts = [[s.text for s in g.samples] for g in batched]
    assert texts == [[g.samples[0].text] * 2 for g in single]
    assert len({t[0] for t in texts}) > 1  # the replies depend on the prompt


def test_prompt_text_ends_where_the_reply_starts(tiny_models):
    """A template without a generation prompt gets the assistant's header; plain strings pass as they are."""
    from transformers import AutoTokenizer

    from training.generation import prompt_text

    tokenizer = AutoTokenizer.from_pretrained(tiny_models.causal_lm)
    text = prompt_text(tokenizer, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}])
    assert text.endswith("User: Hi?\nAssistant:") and text.startswith("System: Be brief.")
    assert prompt_text(tokenizer, "Once upon a time") == "Once upon a time"
    tokenizer.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    assert prompt_text(tokenizer, [{"role": "user", "content": "Hi?"}]) == "<|user|>Hi?<|assistant|>"


def test_bad_arguments_are_refused_naming_them(tiny_models, tmp_path):
    """Errors name the argument; a checkpoint outside the roots is refused before any model loads."""
    from training.generation import generate_responses

    prompt = [ask("a red box")]
    common = dict(k=1, max_new_tokens=4, temperature=0.0)
    cases = [
        (dict(common, k=0), "k", "`k` must be an integer >= 1, got 0."),
        (dict(common, temperature=-1), "temperature", "`temperature` must be a number from 0 to 5"),
        (dict(common, top_p=0), "top_p", "`top_p` must be > 0 and <= 1"),
    ]
    for kwargs, field, message in cases:
        with pytest.raises(ConfigError, match=message) as info:
            generate_responses(prompt, [tiny_models.causal_lm], **kwargs)
        assert info.value.field == field
    with pytest.raises(ConfigError, match="Two checkpoints have the label 'x'"):
        generate_responses(prompt, [("x", tiny_models.causal_lm), ("x", tiny_models.causal_lm)], **common)
    with pytest.raises(ConfigError, match=r"prompts\[0\]"):
        generate_responses([[{"role": "robot", "content": "hi"}]], [tiny_models.causal_lm], **common)
    with pytest.raises(ModelPathError, match="is outside the model roots"):
        generate_responses(prompt, [tiny_models.causal_lm], model_roots=[tmp_path], **common)
