"""The pure importer: formats, splitting, and every kind of bad line."""

import json

import pytest

from annotation.core.importing import (
    Hygiene,
    detect_format,
    flag_near_duplicate_prompts,
    parse_jsonl,
    split_hh_transcript,
)
from tests.conftest import hh_file


def lines(*rows) -> list[str]:
    return [r if isinstance(r, str) else json.dumps(r) for r in rows]


def test_arbiter_format_keeps_models_metadata_and_gold():
    """Arbiter's own format keeps the conversation, each response's model, metadata and gold."""
    report = parse_jsonl(
        lines(
            {
                "id": "q1",
                "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                "responses": [{"content": "Hello", "model": "m1"}, {"content": "Hey", "model": "m2", "metadata": {"t": 1}}],
                "metadata": {"topic": "greeting"},
                "priority": 3,
                "gold": {"preferred": 1},
            }
        )
    )
    assert report.ok, report.errors
    (rec,) = report.records
    assert rec.external_id == "q1" and rec.format == "arbiter" and rec.priority == 3
    assert rec.messages[0] == {"role": "system", "content": "Be brief."}
    assert [(r.content, r.model) for r in rec.responses] == [("Hello", "m1"), ("Hey", "m2")]
    assert rec.responses[1].metadata == {"t": 1}
    assert rec.gold == {"outcome": "preferred", "preferred": 1}


def test_trl_standard_and_conversational():
    """TRL rows, as strings or as message lists, become a prompt with chosen and rejected replies."""
    report = parse_jsonl(
        lines(
            {"prompt": "2+2?", "chosen": "4", "rejected": "5"},
            {
                "prompt": [{"role": "user", "content": "Capital of France?"}],
                "chosen": [{"role": "assistant", "content": "Paris"}],
                "rejected": [{"role": "assistant", "content": "Lyon"}],
                "margin": 1.5,
            },
        )
    )
    assert report.ok, report.errors
    std, conv = report.records
    assert std.messages == [{"role": "user", "content": "2+2?"}]
    assert [r.content for r in std.responses] == ["4", "5"]
    assert [r.metadata["source_label"] for r in std.responses] == ["chosen", "rejected"]
    assert conv.messages == [{"role": "user", "content": "Capital of France?"}]
    assert [r.content for r in conv.responses] == ["Paris", "Lyon"]
    assert conv.metadata["margin"] == 1.5


def test_trl_implicit_prompt_is_split_at_the_shared_head():
    """Without a prompt, the shared head of chosen and rejected is the conversation."""
    head = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    report = parse_jsonl(
        lines({"chosen": [*head, {"role": "assistant", "content": "good"}],
               "rejected": [*head, {"role": "assistant", "content": "bad"}]})
    )
    assert report.ok, report.errors
    assert report.records[0].messages == head
    assert [r.content for r in report.records[0].responses] == ["good", "bad"]


def test_hh_transcripts_split_into_conversation_and_final_replies():
    """An HH pair becomes the shared multi-turn conversation plus the two final assistant replies."""
    chosen = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Tell me a joke\n\nAssistant: Why did the chicken..."
    rejected = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Tell me a joke\n\nAssistant: No."
    report = parse_jsonl(lines({"chosen": chosen, "rejected": rejected}))
    assert report.ok, report.errors
    (rec,) = report.records
    assert rec.format == "hh"
    assert rec.messages == [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Tell me a joke"},
    ]
    assert [r.content for r in rec.responses] == ["Why did the chicken...", "No."]


def test_hh_inline_speaker_marker_merges_turns_of_one_speaker():
    """Two assistant turns in a row (a marker inside a turn) are one message, nothing is lost."""
    text = "\n\nHuman: q\n\nAssistant: part one  Human: quoted\n\nAssistant: part two"
    assert split_hh_transcript(text, "chosen") == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "part one  Human: quoted\n\nAssistant: part two"},
    ]


def test_hh_harmless_1500_file_imports_every_line():
    """The real 1,500-pair HH file parses into 1,500 pairwise items, split correctly."""
    HH_FILE = hh_file()
    with HH_FILE.open("rb") as fh:
        report = parse_jsonl(fh)
    assert report.ok, report.errors[:5]
    assert len(report.records) == 1500 and report.formats == {"hh": 1500}
    raw = [json.loads(line) for line in HH_FILE.read_text().splitlines()]
    multi_turn = 0
    for rec, row in zip(report.records, raw, strict=True):
        assert rec.messages[0]["role"] == "user" and rec.messages[-1]["role"] == "user"
        roles = [m["role"] for m in rec.messages]
        assert all(a != b for a, b in zip(roles, roles[1:], strict=False)), "turns alternate"
        multi_turn += len(rec.messages) > 1
        chosen, rejected = (r.content for r in rec.responses)
        # The transcript is exactly the conversation followed by the final reply.
        for reply, transcript in ((chosen, row["chosen"]), (rejected, row["rejected"])):
            assert transcript.endswith(reply)
            assert rec.messages[-1]["content"] in transcript
    assert multi_turn > 500  # the file is mostly multi-turn conversations


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "each line must be a JSON object, not list"),
        (json.dumps({"foo": 1}), "unrecognised format"),
        (json.dumps({"messages": [{"role": "user", "content": "q"}], "responses": [{"content": "a"}]}),
         "this campaign needs 2 responses per item, the line has 1"),
        (json.dumps({"messages": [{"role": "robot", "content": "q"}], "responses": ["a", "b"]}),
         "messages[0].role: must be one of system, user, assistant, not 'robot'"),
        (json.dumps({"messages": [{"role": "user", "content": 5}], "responses": ["a", "b"]}),
         "messages[0].content: must be a string"),
        (json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}],
                     "responses": ["a", "b"]}), "must end with a user (or system) turn"),
        (json.dumps({"messages": [{"role": "user", "content": "q"}], "responses": [{"content": None}, "b"]}),
         "responses[0].content: must be a string"),
        (json.dumps({"messages": [{"role": "user", "content": "q"}], "responses": ["a", "b"], "gold": {"preferred": 2}}),
         "gold.preferred: must be a response index from 0 to 1"),
        (json.dumps({"messages": [{"role": "user", "content": "q"}], "responses": ["a", "b"], "priority": "high"}),
         "priority: must be an integer"),
        (json.dumps({"prompt": "q", "chosen": "a"}), "rejected: missing"),
        (json.dumps({"prompt": "q", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"}),
         "chosen: must hold exactly one assistant message"),
        (json.dumps({"prompt": "", "chosen": "a", "rejected": "b"}), "prompt: is empty"),
        (json.dumps({"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": 7}), "rejected: missing or not a transcript string"),
        (json.dumps({"chosen": "\n\nHuman: q\n\nAssistant: a\n\nHuman: more",
                     "rejected": "\n\nHuman: q\n\nAssistant: b"}), "chosen: after the conversation it shares"),
        (json.dumps({"id": {"x": 1}, "prompt": "q", "chosen": "a", "rejected": "b"}), "id: must be a string or an integer"),
        (json.dumps({"prompt": "q", "chosen": "a\u0000b", "rejected": "b"}),
         "contains a NUL character (\\u0000), which cannot be stored; remove it"),
    ],
)
def test_each_kind_of_bad_line_is_reported_with_its_number(line, message):
    """A bad line is reported with its line number and a reason naming the field."""
    good = json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"})
    other = json.dumps({"prompt": "q", "chosen": "a", "rejected": "c"})
    report = parse_jsonl([good, "", line, other])
    assert not report.ok
    assert report.error_count == 1
    (number, text), = report.errors
    assert number == 3
    assert message in text


def test_an_escaped_backslash_before_u0000_is_not_a_nul():
    """Only a real NUL is refused: the text `\\u0000` (a backslash, then u0000) imports."""
    report = parse_jsonl([json.dumps({"prompt": "q", "chosen": "a \\u0000 b", "rejected": "b"})])
    assert report.ok, report.errors


def test_invalid_utf8_and_repeated_ids_and_empty_file():
    report = parse_jsonl([b'{"prompt": "q", "chosen": "a", "rejected": "\xff"}'])
    assert report.errors == [(1, "not valid UTF-8 (byte 44)")]
    row = json.dumps({"id": "x", "prompt": "q", "chosen": "a", "rejected": "b"})
    report = parse_jsonl([row, row])
    assert report.errors == [(2, "id 'x' repeats line 1")]
    report = parse_jsonl(["", "  "])
    assert not report.ok and "the file has no items" in report.errors[0][1]


def test_every_bad_line_is_reported_not_just_the_first():
    report = parse_jsonl(["{", json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}), "[]", "3"])
    assert [n for n, _ in report.errors] == [1, 3, 4]


def test_format_can_be_forced_and_detection_is_by_shape():
    assert detect_format({"responses": []}) == "arbiter"
    assert detect_format({"chosen": "\n\nHuman: x", "rejected": "y"}) == "hh"
    assert detect_format({"prompt": "x", "chosen": "y", "rejected": "z"}) == "trl"
    report = parse_jsonl(lines({"prompt": "q", "chosen": "a", "rejected": "b"}), format="hh")
    assert report.errors and report.errors[0][0] == 1
    with pytest.raises(ValueError, match="format must be one of"):
        parse_jsonl([], format="csv")


# --- hygiene: duplicates, identical replies, near-duplicates, sizes, hostile JSON --------------

DUPLICATE = (
    "duplicate of line 1: the same conversation and replies after Unicode NFC normalization and trimming "
    "outer whitespace; remove it, or choose to skip duplicates"
)


def test_exact_duplicates_in_the_file_are_bad_lines_after_nfc_and_trimming():
    """A line repeating an earlier one (NFC-equal, outer spaces aside, replies in either order) is a bad line."""
    first = {"prompt": "Caf\u00e9?", "chosen": "Yes", "rejected": "No"}
    decomposed = {"prompt": "  Cafe\u0301?\n", "chosen": "No ", "rejected": " Yes"}
    other = {"prompt": "Caf\u00e9?", "chosen": "Yes", "rejected": "Maybe"}
    report = parse_jsonl(lines(first, other, decomposed))
    assert not report.ok
    assert report.errors == [(3, DUPLICATE)]
    assert report.records[0].content_hash != report.records[1].content_hash


def test_skipping_duplicates_counts_and_names_each_skipped_line():
    """With skip_duplicates the repeats are left out, counted and named; the rest imports."""
    row = {"prompt": "q", "chosen": "a", "rejected": "b"}
    report = parse_jsonl(lines(row, {**row, "chosen": "c"}, row, row), hygiene=Hygiene(skip_duplicates=True))
    assert report.ok and len(report.records) == 2
    assert report.skipped_count == 2
    assert report.skipped == [
        (3, "duplicate of line 1 (same conversation and replies)"),
        (4, "duplicate of line 1 (same conversation and replies)"),
    ]
    assert report.summary() == "2 item(s) ready (2 trl). 2 duplicate line(s) skipped."


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"prompt": "q", "chosen": "Same answer", "rejected": " Same answer\n"},
         "chosen and rejected are identical after Unicode NFC normalization and trimming outer whitespace; "
         "an item must compare different replies"),
        ({"messages": [{"role": "user", "content": "q"}], "responses": ["a", "b", "\u00e9", "e\u0301"]},
         "responses[2] and responses[3] are identical after Unicode NFC normalization and trimming outer "
         "whitespace; an item must compare different replies"),
    ],
)
def test_identical_replies_in_one_item_are_refused_naming_both(row, message):
    """Two replies of one item that are equal after normalization are a bad line naming both positions."""
    report = parse_jsonl(lines({"prompt": "ok", "chosen": "x", "rejected": "y"}, row), responses_per_item=(2, 9))
    assert report.errors == [(2, message)]
    assert len(report.records) == 1


def test_messages_and_replies_over_the_size_caps_are_bad_lines():
    """Each message and each reply is capped in UTF-8 bytes; the error names the field and both sizes."""
    hygiene = Hygiene(max_message_bytes=10, max_reply_bytes=8)
    report = parse_jsonl(
        lines(
            {"prompt": "q", "chosen": "short", "rejected": "fine"},
            {"prompt": "\u00e9" * 6, "chosen": "a", "rejected": "b"},  # 12 bytes in 6 characters
            {"messages": [{"role": "user", "content": "q"}], "responses": ["a", "123456789"]},
        ),
        hygiene=hygiene,
    )
    assert report.errors == [
        (2, "messages[0].content: 12 bytes, more than the 10 byte limit per message"),
        (3, "responses[1]: 9 bytes, more than the 8 byte limit per reply"),
    ]


def test_json_nested_too_deep_or_with_huge_integers_is_a_bad_line_not_a_crash():
    """Nesting past the parser's recursion or past MAX_JSON_DEPTH, and 5,000-digit integers, name the line."""
    good = {"prompt": "q", "chosen": "a", "rejected": "b"}
    deep = "[" * 100_000 + "]" * 100_000
    nested: dict = {}
    node = nested
    for _ in range(100):
        node["x"] = {}
        node = node["x"]
    report = parse_jsonl(
        [json.dumps(good), deep, json.dumps({**good, "chosen": "c", "metadata": nested}),
         '{"prompt": "q", "chosen": "a", "rejected": "d", "n": ' + "9" * 5000 + "}"]
    )
    assert [line for line, _ in report.errors] == [2, 3, 4]
    assert report.errors[0][1] == "JSON nested too deep (more than 64 levels)"
    assert report.errors[1][1] == "JSON nested too deep (more than 64 levels)"
    assert report.errors[2][1].startswith("an integer is too large (Exceeds the limit (4300 digits)")
    assert report.errors[2][1].endswith("; write it as a string")


def _long_prompt(last_word: str) -> str:
    return " ".join(f"word{i}" for i in range(200)) + f" {last_word}"


def test_near_duplicate_prompts_are_warnings_with_the_rule_named():
    """Prompts with Jaccard >= 0.9 on word 5-shingles are flagged (not refused), naming the earlier line."""
    rows = [
        {"prompt": _long_prompt("alpha"), "chosen": "a", "rejected": "b"},
        {"prompt": "Something else entirely, nothing alike at all here", "chosen": "a", "rejected": "b"},
        {"prompt": _long_prompt("omega"), "chosen": "c", "rejected": "d"},  # 196 of 201 shingles shared
        {"prompt": "SOMETHING else   entirely, nothing alike at all here", "chosen": "e", "rejected": "f"},
    ]
    report = parse_jsonl(lines(*rows))
    flag_near_duplicate_prompts(report, existing=[("prompt 'old'", [{"role": "user", "content": "Hello there"}])])
    assert report.ok and len(report.records) == 4
    rule = "Jaccard >= 0.9 on word 5-shingles, found with MinHash LSH (64 permutations)"
    assert report.near_duplicate_rule == rule
    assert report.warnings == [
        (3, f"prompt is a near-duplicate of the prompt of line 1 ({rule})"),
        (4, f"prompt is a near-duplicate of the prompt of line 2 ({rule})"),
    ]
    fresh = parse_jsonl(lines({"prompt": "hello  there", "chosen": "a", "rejected": "b"}))
    flag_near_duplicate_prompts(fresh, existing=[("prompt 'old'", [{"role": "user", "content": "Hello there"}])])
    assert fresh.warnings == [(1, f"prompt is a near-duplicate of prompt 'old' already in this campaign ({rule})")]
    assert fresh.ok


def test_near_duplicates_are_flagged_at_the_threshold_and_not_below():
    """J = 116/118 (one word changed at the end of 121) is flagged; J = 86/106 (two words changed) is not."""
    base = [f"w{i}" for i in range(100)]
    two_changed = base.copy()
    two_changed[20], two_changed[70] = "changed", "also"
    long = " ".join(f"word{i}" for i in range(120))
    report = parse_jsonl(lines(
        {"prompt": " ".join(base), "chosen": "a", "rejected": "b"},
        {"prompt": " ".join(two_changed), "chosen": "a", "rejected": "b"},
        {"prompt": long + " first", "chosen": "a", "rejected": "b"},
        {"prompt": long + " second", "chosen": "a", "rejected": "b"},
    ))
    flag_near_duplicate_prompts(report)
    assert [line for line, _ in report.warnings] == [4]
    assert report.warnings[0][1].startswith("prompt is a near-duplicate of the prompt of line 3 (Jaccard >= 0.9")
