"""Generate a demo campaign's prompts and responses. No Django, no network, deterministic.

Two simulated models answer each prompt: a careful one that is right and explains itself, and
a hasty one that is terse and sometimes wrong, so the demo has a real signal to judge.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from typing import Any

CAREFUL, HASTY, WORDY = "demo-careful-v1", "demo-hasty-v0", "demo-wordy-v2"

_CAPITALS = [
    ("France", "Paris"), ("Japan", "Tokyo"), ("Canada", "Ottawa"), ("Australia", "Canberra"),
    ("Brazil", "Brasília"), ("Kenya", "Nairobi"), ("Norway", "Oslo"), ("Egypt", "Cairo"),
    ("Peru", "Lima"), ("Vietnam", "Hanoi"), ("Turkey", "Ankara"), ("Morocco", "Rabat"),
    ("New Zealand", "Wellington"), ("Switzerland", "Bern"), ("Nigeria", "Abuja"), ("Chile", "Santiago"),
]
_WRONG_CAPITALS = {"Canada": "Toronto", "Australia": "Sydney", "Brazil": "Rio de Janeiro", "Turkey": "Istanbul",
                   "Morocco": "Casablanca", "New Zealand": "Auckland", "Switzerland": "Zurich", "Nigeria": "Lagos"}
_UNITS = [("kilometres", "miles", 0.621371), ("kilograms", "pounds", 2.20462), ("litres", "US gallons", 0.264172),
          ("metres", "feet", 3.28084)]
_FUNCS = [
    ("reverses a string", "reverse_string", "s", "return s[::-1]", "return ''.join(sorted(s))"),
    ("returns the largest number in a list", "largest", "xs", "return max(xs)", "return xs[-1]"),
    ("counts the vowels in a string", "count_vowels", "s", "return sum(c in 'aeiouAEIOU' for c in s)",
     "return len([c for c in s if c in 'aeiou'])"),
    ("checks whether a number is even", "is_even", "n", "return n % 2 == 0", "return n % 2"),
    ("sums the squares of a list", "sum_squares", "xs", "return sum(x * x for x in xs)", "return sum(xs) ** 2"),
]


def _arithmetic(rng: random.Random) -> tuple[list[dict], str, str]:
    a, b, c = rng.randint(12, 99), rng.randint(3, 19), rng.randint(2, 9)
    q = f"A shop has {a} boxes with {b} apples each. It sells {c} boxes. How many apples are left?"
    right = (a - c) * b
    wrong = right + rng.choice([-b, b, c, -c]) if rng.random() < 0.6 else right
    careful = (f"There are **{a} − {c} = {a - c}** boxes left, each with {b} apples.\n\n"
               f"{a - c} × {b} = **{right}** apples are left.")
    hasty = f"{wrong} apples."
    return [{"role": "user", "content": q}], careful, hasty


def _capital(rng: random.Random) -> tuple[list[dict], str, str]:
    country, capital = rng.choice(_CAPITALS)
    q = f"What is the capital of {country}? Answer in one sentence."
    careful = f"The capital of {country} is **{capital}**."
    hasty = f"It's {_WRONG_CAPITALS.get(country, capital)}."
    return [{"role": "user", "content": q}], careful, hasty


def _units(rng: random.Random) -> tuple[list[dict], str, str]:
    src, dst, factor = rng.choice(_UNITS)
    value = rng.randint(2, 250)
    q = f"Convert {value} {src} to {dst}."
    right = value * factor
    careful = f"{value} {src} × {factor} = **{right:.2f} {dst}** (1 {src[:-1]} ≈ {factor} {dst})."
    hasty = f"About {right * rng.choice([1.0, 1.0, 1.1, 0.9]):.0f} {dst}."
    return [{"role": "user", "content": q}], careful, hasty


def _sorting(rng: random.Random) -> tuple[list[dict], str, str]:
    xs = rng.sample(range(1, 100), rng.randint(5, 8))
    q = f"Sort these numbers from smallest to largest: {', '.join(map(str, xs))}"
    ordered = sorted(xs)
    hasty_list = ordered[:]
    if rng.random() < 0.5:
        i = rng.randrange(len(hasty_list) - 1)
        hasty_list[i], hasty_list[i + 1] = hasty_list[i + 1], hasty_list[i]
    careful = "Sorted ascending:\n\n" + ", ".join(map(str, ordered))
    hasty = ", ".join(map(str, hasty_list))
    return [{"role": "user", "content": q}], careful, hasty


def _code(rng: random.Random) -> tuple[list[dict], str, str]:
    what, name, arg, good, bad = rng.choice(_FUNCS)
    q = f"Write a Python function `{name}` that {what}."
    careful = (f"Here is `{name}`:\n\n```python\ndef {name}({arg}):\n    \"\"\"{what.capitalize()}.\"\"\"\n"
               f"    {good}\n```\n\nIt runs in linear time in the size of the input.")
    hasty = f"```python\ndef {name}({arg}):\n    {bad if rng.random() < 0.7 else good}\n```"
    return [{"role": "user", "content": q}], careful, hasty


def _followup(rng: random.Random) -> tuple[list[dict], str, str]:
    country, capital = rng.choice(_CAPITALS)
    messages = [
        {"role": "user", "content": f"I'm planning a trip to {country}."},
        {"role": "assistant", "content": f"Sounds great! What would you like to know about {country}?"},
        {"role": "user", "content": "Which city should I fly into if I want to visit the capital?"},
    ]
    careful = f"Fly into **{capital}**, the capital of {country}; its main airport serves international flights."
    hasty = f"Just fly into {_WRONG_CAPITALS.get(country, capital)}."
    return messages, careful, hasty


_GENERATORS: list[Callable[[random.Random], tuple[list[dict], str, str]]] = [
    _arithmetic, _capital, _units, _sorting, _code, _followup,
]


def demo_rows(n: int = 240, *, seed: int = 7) -> Iterator[dict[str, Any]]:
    """Yield `n` distinct items in Arbiter's import format, each with a careful and a hasty response.

    A generator that repeats an earlier item (same conversation and replies) is asked again, then
    the next one is tried, so the demo imports without duplicates.
    """
    rng = random.Random(seed)
    seen: set[str] = set()
    for i in range(n):
        for k in range(len(_GENERATORS) * 20):
            generate = _GENERATORS[(i + k // 20) % len(_GENERATORS)]
            messages, careful, hasty = generate(rng)
            key = json.dumps([messages, careful.strip(), hasty.strip()])
            if key not in seen and careful.strip() != hasty.strip():
                seen.add(key)
                break
        else:
            raise ValueError(f"the demo generators cannot make {n} distinct items")
        yield {
            "id": f"demo-{i + 1:04d}",
            "messages": messages,
            "responses": [{"content": careful, "model": CAREFUL}, {"content": hasty, "model": HASTY}],
            "metadata": {"task": generate.__name__.lstrip("_")},
        }


def _wordy(careful: str) -> str:
    return (
        "Great question! Let me think about this carefully and walk through it step by step, "
        "because it is important to be thorough.\n\n" + careful +
        "\n\nI hope this helps! Let me know if you have any other questions at all."
    )


def demo_ranking_rows(n: int = 60, *, seed: int = 11) -> Iterator[dict[str, Any]]:
    """Yield `n` items with three responses each (careful, hasty, wordy) to rank."""
    for row in demo_rows(n, seed=seed):
        careful = row["responses"][0]["content"]
        row = {**row, "id": row["id"].replace("demo-", "rank-")}
        row["responses"] = [*row["responses"], {"content": _wordy(careful), "model": WORDY}]
        yield row


def demo_single_rows(n: int = 60, *, seed: int = 13) -> Iterator[dict[str, Any]]:
    """Yield `n` items with one response each, alternating careful and hasty, for thumbs up/down.

    Two items may share a question and the reply picked; only the first of such is kept.
    """
    seen: set[str] = set()
    made = 0
    for row in demo_rows(n * 2, seed=seed):
        reply = row["responses"][made % 2]
        key = json.dumps([row["messages"], reply["content"].strip()])
        if key in seen:
            continue
        seen.add(key)
        yield {**row, "id": row["id"].replace("demo-", "one-"), "responses": [reply]}
        made += 1
        if made == n:
            return
