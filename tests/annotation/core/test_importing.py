"""The pure importer: formats, splitting, and every kind of bad line."""

import json

import pytest

from annotation.core.importing import detect_format, parse_jsonl, split_hh_transcript
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
    report = parse_jsonl([good, "", line, good])
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
