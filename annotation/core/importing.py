"""Parse and validate JSONL imports in the formats people already have. No Django here.

Formats, detected line by line (or forced with `format=`):

- ``arbiter``: ``{"id"?, "messages": [{role, content}] | "prompt": str, "responses":
  [{"content", "model"?, "metadata"?}], "metadata"?, "priority"?, "gold"?}``
- ``trl``: TRL preference rows: ``prompt``/``chosen``/``rejected`` as strings (standard) or
  message lists (conversational); without ``prompt``, message lists whose shared head is the
  conversation (implicit prompt).
- ``hh``: Anthropic HH-RLHF transcripts: ``chosen``/``rejected`` strings of
  ``\\n\\nHuman:``/``\\n\\nAssistant:`` turns, split into the shared conversation and the two
  final replies.

Every line is validated before anything is written; `parse_jsonl` returns every bad line with
its number and the reason, and the caller writes nothing unless there are none.

Hygiene, checked on every line before anything is stored (`Hygiene` holds the knobs):

- size caps: each message and each reply at most `max_message_bytes` / `max_reply_bytes`
  (UTF-8); JSON nested deeper than `MAX_JSON_DEPTH` or an integer longer than Python's
  int-string limit is a bad line, not a crash.
- identical replies in one item are refused (compared after `normalize`).
- exact duplicates: two lines with the same conversation and the same replies after
  `normalize` (Unicode NFC, outer whitespace stripped) share a `content_hash`; a repeat is a
  bad line, or, with `skip_duplicates`, skipped and listed. The caller checks the hashes
  against what is already stored.
- near-duplicate prompts (word 5-shingles, Jaccard >= `NEAR_DUPLICATE_THRESHOLD`, estimated
  with datasketch's MinHash + MinHashLSH) are warnings: the file still imports.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from datasketch import MinHash, MinHashLSH

FORMATS = ("auto", "arbiter", "trl", "hh")
ROLES = ("system", "user", "assistant")
MAX_RESPONSES = 9
MAX_ERRORS_REPORTED = 1000
MAX_JSON_DEPTH = 64
DEFAULT_MAX_MESSAGE_BYTES = 100_000
DEFAULT_MAX_REPLY_BYTES = 100_000
# Near-duplicate prompts: Jaccard similarity >= 0.9 between the sets of word 5-shingles of the
# normalized, lower-cased prompt texts: candidates found by MinHash (64 permutations) and
# MinHashLSH (datasketch), each candidate's Jaccard then computed exactly. A text shorter than 5
# words is one shingle.
NEAR_DUPLICATE_THRESHOLD = 0.9
SHINGLE_WORDS = 5
MINHASH_PERMUTATIONS = 64
NEAR_DUPLICATE_RULE = (
    f"Jaccard >= {NEAR_DUPLICATE_THRESHOLD} on word {SHINGLE_WORDS}-shingles, "
    f"found with MinHash LSH ({MINHASH_PERMUTATIONS} permutations)"
)
NORMALIZATION = "after Unicode NFC normalization and trimming outer whitespace"
_HH_TURN = re.compile(r"\n\n(Human|Assistant): ?")
_HH_ROLE = {"Human": "user", "Assistant": "assistant"}


def _has_nul(value: Any) -> bool:
    """Return whether a parsed JSON value holds a NUL character in any string (PostgreSQL refuses them)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _json_depth_exceeds(value: Any, limit: int) -> bool:
    """Return whether a parsed JSON value nests deeper than `limit` (iteratively: no recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, dict | list))
    return False


def normalize(text: str) -> str:
    """Return `text` as compared for duplicates: Unicode NFC, outer whitespace stripped."""
    # ASCII text is already NFC; the check is a C loop, normalizing is not free.
    return (text if text.isascii() else unicodedata.normalize("NFC", text)).strip()


def content_hash(messages: Sequence[dict[str, str]], replies: Sequence[str], *, normalized: bool = False) -> str:
    """Return the hex SHA-256 naming an item's content: its conversation and its replies.

    Texts are `normalize`d; roles count; the replies are a set in sorted order (the same two
    replies in the other order are the same comparison). NUL never occurs in stored text (the
    importer refuses it), so it separates the parts: "role:text" per message, then an empty
    part, then the replies.
    """
    canonical = "\x00".join(
        [*(f"{m['role']}:{normalize(m['content'])}" for m in messages), "",
         *sorted(replies if normalized else map(normalize, replies))]
    )
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _prompt_key(messages: Sequence[dict[str, str]]) -> str:
    """A conversation's text as compared for near-duplicates: normalized words, lower case."""
    return " ".join(normalize(" ".join(m["content"] for m in messages)).lower().split())


# Odd 64-bit multipliers that mix the five word hashes of a shingle into one value.
_SHINGLE_MIX = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD][:SHINGLE_WORDS],
    dtype=np.uint64,
)


def _shingle_hashes(keys: Sequence[str]) -> list[list[int]]:
    """Return, per `_prompt_key`, the 32-bit hashes of its word 5-shingles (a shorter text is one shingle).

    Each word is hashed once (CRC-32); each run of five word hashes is mixed into one value by
    multiplying by fixed odd constants and adding (mod 2**64), for every text at once with
    numpy. MinHash then takes these ints as they are (`hashfunc=int`) and applies its own
    random permutations.
    """
    words = [list(map(zlib.crc32, k.encode("utf-8", "surrogatepass").split(b" "))) for k in keys]
    flat = np.fromiter(itertools.chain.from_iterable(words), dtype=np.uint64, count=sum(map(len, words)))
    k = SHINGLE_WORDS
    padded = np.concatenate([flat, np.zeros(k, dtype=np.uint64)])
    mixed = np.zeros(len(flat), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            mixed += padded[j : j + len(flat)] * _SHINGLE_MIX[j]
    mixed &= np.uint64(0xFFFFFFFF)
    out: list[list[int]] = []
    start = 0
    for w in words:
        n = len(w)
        if n <= k:  # one shingle: the words there are, mixed alone
            with np.errstate(over="ignore"):
                out.append([int((flat[start : start + n] * _SHINGLE_MIX[:n]).sum() & np.uint64(0xFFFFFFFF))])
        else:
            out.append(mixed[start : start + n - k + 1].tolist())
        start += n
    return out


class LineError(ValueError):
    """A reason a line cannot be imported."""


@dataclass(frozen=True)
class Hygiene:
    """What `parse_jsonl` checks beyond the format: size caps and what to do with duplicates."""

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES
    skip_duplicates: bool = False


@dataclass(frozen=True)
class ResponseRecord:
    content: str
    model: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ItemRecord:
    line: int
    format: str
    external_id: str
    messages: list[dict[str, str]]
    responses: list[ResponseRecord]
    metadata: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    gold: dict[str, Any] | None = None
    content_hash: str = ""


@dataclass
class ImportReport:
    """Every line's fate: a record, an error (nothing is imported), a skip, or a warning."""

    records: list[ItemRecord] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)
    error_count: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)
    skipped_count: int = 0
    warnings: list[tuple[int, str]] = field(default_factory=list)
    warning_count: int = 0
    formats: Counter[str] = field(default_factory=Counter)
    lines: int = 0
    near_duplicate_rule: str = NEAR_DUPLICATE_RULE

    @property
    def ok(self) -> bool:
        return self.error_count == 0 and bool(self.records)

    def add_error(self, line: int, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS_REPORTED:
            self.errors.append((line, message))

    def add_skipped(self, line: int, message: str) -> None:
        self.skipped_count += 1
        if len(self.skipped) < MAX_ERRORS_REPORTED:
            self.skipped.append((line, message))

    def add_warning(self, line: int, message: str) -> None:
        self.warning_count += 1
        if len(self.warnings) < MAX_ERRORS_REPORTED:
            self.warnings.append((line, message))

    def drop_records(self, lines: set[int]) -> None:
        """Remove the records of these lines (skipped duplicates) and their format counts."""
        kept = []
        for r in self.records:
            if r.line in lines:
                self.formats[r.format] -= 1
            else:
                kept.append(r)
        self.records = kept
        self.formats = +self.formats

    def summary(self) -> str:
        if self.error_count:
            return f"{self.error_count} bad line(s) of {self.lines}; nothing was imported."
        kinds = ", ".join(f"{n} {fmt}" for fmt, n in sorted(self.formats.items()))
        text = f"{len(self.records)} item(s) ready ({kinds})."
        if self.skipped_count:
            text += f" {self.skipped_count} duplicate line(s) skipped."
        if self.warning_count:
            text += f" {self.warning_count} near-duplicate prompt(s) flagged."
        return text


def parse_jsonl(
    lines: Iterable[bytes | str],
    *,
    format: str = "auto",
    responses_per_item: tuple[int, int] = (2, 2),
    hygiene: Hygiene = Hygiene(),
) -> ImportReport:
    """Parse JSONL lines into item records, collecting every bad line with its reason.

    `responses_per_item` is the (min, max) number of responses an item may have for the
    campaign's kind: (2, 2) for pairwise, (2, 9) for ranking, (1, 9) for rating. Duplicates
    within the file are caught here (each record carries its `content_hash`); duplicates of
    stored items and near-duplicate prompts are for the caller (`flag_near_duplicate_prompts`).
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
    report = ImportReport()
    seen_ids: dict[str, int] = {}
    seen_hashes: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        report.lines = number
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError as exc:
            report.add_error(number, f"not valid UTF-8 (byte {exc.start})")
            continue
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            report.add_error(number, f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        except RecursionError:
            report.add_error(number, f"JSON nested too deep (more than {MAX_JSON_DEPTH} levels)")
            continue
        except ValueError as exc:  # Python's int-string limit: an integer of thousands of digits
            report.add_error(number, f"an integer is too large ({exc}); write it as a string")
            continue
        # A value can nest no deeper than the brackets the line opens, so most lines skip the walk.
        if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _json_depth_exceeds(row, MAX_JSON_DEPTH):
            report.add_error(number, f"JSON nested too deep (more than {MAX_JSON_DEPTH} levels)")
            continue
        if "\\u0000" in text and _has_nul(row):
            report.add_error(number, "contains a NUL character (\\u0000), which cannot be stored; remove it")
            continue
        try:
            record = parse_row(row, line=number, format=format)
            _check_response_count(record, responses_per_item)
            _check_sizes(record, hygiene)
            replies = _check_distinct_replies(record)
        except LineError as exc:
            report.add_error(number, str(exc))
            continue
        if record.external_id:
            if record.external_id in seen_ids:
                report.add_error(
                    number, f"id {record.external_id!r} repeats line {seen_ids[record.external_id]}"
                )
                continue
            seen_ids[record.external_id] = number
        digest = content_hash(record.messages, replies, normalized=True)
        if digest in seen_hashes:
            first = seen_hashes[digest]
            if hygiene.skip_duplicates:
                report.add_skipped(number, f"duplicate of line {first} (same conversation and replies)")
            else:
                report.add_error(number, duplicate_message(f"line {first}"))
            continue
        seen_hashes[digest] = number
        record = _with_hash(record, digest)
        report.records.append(record)
        report.formats[record.format] += 1
    if report.lines == 0 or (not report.records and not report.error_count and not report.skipped_count):
        report.add_error(0, "the file has no items (it is empty or only blank lines)")
    return report


def duplicate_message(where: str) -> str:
    """The error for an exact duplicate of `where` ("line 3", "an item already in this campaign")."""
    return (
        f"duplicate of {where}: the same conversation and replies {NORMALIZATION}; "
        "remove it, or choose to skip duplicates"
    )


def flag_near_duplicate_prompts(
    report: ImportReport, *, existing: Iterable[tuple[str, Sequence[dict[str, str]]]] = ()
) -> None:
    """Warn on each record whose prompt is a near-duplicate of an earlier line's or a stored one's.

    `existing` gives (label, conversation) for the prompts already stored, e.g. ("prompt 'p1'",
    messages). Near means `NEAR_DUPLICATE_RULE`; equal texts are matched by a dict, and only
    distinct texts are MinHashed (datasketch), once each, and looked up in one MinHashLSH.
    """
    first: dict[str, str] = {}  # prompt text -> who had it first ("the prompt of line 3", "prompt 'p1' ...")
    texts: list[str] = []  # distinct prompt texts: the stored ones, then the file's
    owners: list[str] = []
    text_lines: list[int] = []  # the line of each of the file's distinct texts
    found: dict[int, str] = {}  # line -> the earlier prompt it nearly repeats
    for label, messages in existing:
        key = _prompt_key(messages)
        if key not in first:
            first[key] = f"{label} already in this campaign"
            texts.append(key)
            owners.append(first[key])
    new_from = len(texts)
    for r in report.records:
        key = _prompt_key(r.messages)
        if key in first:
            found[r.line] = first[key]
            continue
        first[key] = f"the prompt of line {r.line}"
        texts.append(key)
        owners.append(first[key])
        text_lines.append(r.line)
    if texts:
        # LSH bands tuned to miss few true pairs (weights: false positives 0.1, false negatives
        # 0.9); each candidate's Jaccard is then computed exactly from the shingles, so no pair
        # under the threshold is flagged.
        lsh = MinHashLSH(threshold=NEAR_DUPLICATE_THRESHOLD, num_perm=MINHASH_PERMUTATIONS, weights=(0.1, 0.9))
        shingles = _shingle_hashes(texts)
        minhashes = MinHash.bulk(shingles, num_perm=MINHASH_PERMUTATIONS, hashfunc=int)
        for i, m in enumerate(minhashes):
            if i >= new_from:
                mine = set(shingles[i])
                close = [
                    j for j in sorted(lsh.query(m))
                    if len(mine & (other := set(shingles[j]))) >= NEAR_DUPLICATE_THRESHOLD * len(mine | other)
                ]
                if close:
                    found[text_lines[i - new_from]] = owners[close[0]]
            lsh.insert(i, m, check_duplication=False)
    for line in sorted(found):
        report.add_warning(
            line, f"prompt is a near-duplicate of {found[line]} ({NEAR_DUPLICATE_RULE})"
        )


def parse_row(row: Any, *, line: int, format: str = "auto") -> ItemRecord:
    """Turn one decoded JSON value into an ItemRecord, or raise LineError saying why not."""
    if not isinstance(row, dict):
        raise LineError(f"each line must be a JSON object, not {type(row).__name__}")
    fmt = detect_format(row) if format == "auto" else format
    if fmt == "arbiter":
        return _parse_arbiter(row, line)
    if fmt == "trl":
        return _parse_trl(row, line)
    if fmt == "hh":
        return _parse_hh(row, line)
    raise LineError(
        "unrecognised format: expected Arbiter's (messages + responses), TRL's "
        "(prompt/chosen/rejected) or Anthropic HH (chosen/rejected transcripts)"
    )


def detect_format(row: dict[str, Any]) -> str:
    """Return the format a row is written in, judged by its keys and value types."""
    if "responses" in row:
        return "arbiter"
    if "chosen" in row or "rejected" in row:
        chosen = row.get("chosen")
        if "prompt" not in row and isinstance(chosen, str) and chosen.lstrip().startswith("Human:"):
            return "hh"
        return "trl"
    return "unknown"


# --- helpers ----------------------------------------------------------------------------------


def _with_hash(record: ItemRecord, digest: str) -> ItemRecord:
    object.__setattr__(record, "content_hash", digest)  # frozen, and built only here
    return record


def _too_big(text: str, limit: int) -> int:
    """Return the UTF-8 size of `text` when it is over `limit` bytes, else 0."""
    # A character is at most 4 bytes in UTF-8, so most texts need no encoding to be cleared.
    if len(text) * 4 <= limit:
        return 0
    size = len(text.encode("utf-8", "surrogatepass"))
    return size if size > limit else 0


def _check_sizes(record: ItemRecord, hygiene: Hygiene) -> None:
    for i, m in enumerate(record.messages):
        if size := _too_big(m["content"], hygiene.max_message_bytes):
            raise LineError(
                f"messages[{i}].content: {size} bytes, more than the {hygiene.max_message_bytes} byte limit "
                "per message"
            )
    names = _reply_names(record)
    for name, r in zip(names, record.responses, strict=True):
        if size := _too_big(r.content, hygiene.max_reply_bytes):
            raise LineError(
                f"{name}: {size} bytes, more than the {hygiene.max_reply_bytes} byte limit per reply"
            )


def _reply_names(record: ItemRecord) -> list[str]:
    """How the line names its replies: chosen/rejected (TRL, HH) or responses[i] (Arbiter)."""
    if record.format in ("trl", "hh"):
        return ["chosen", "rejected"]
    return [f"responses[{i}]" for i in range(len(record.responses))]


def _check_distinct_replies(record: ItemRecord) -> list[str]:
    """Refuse two equal replies (after `normalize`); return the normalized replies."""
    seen: dict[str, int] = {}
    names = _reply_names(record)
    normalized = [normalize(r.content) for r in record.responses]
    for i, key in enumerate(normalized):
        if key in seen:
            raise LineError(
                f"{names[seen[key]]} and {names[i]} are identical {NORMALIZATION}; "
                "an item must compare different replies"
            )
        seen[key] = i
    return normalized


def _check_response_count(record: ItemRecord, bounds: tuple[int, int]) -> None:
    low, high = bounds
    n = len(record.responses)
    if not low <= n <= high:
        want = str(low) if low == high else f"{low} to {high}"
        raise LineError(f"responses: this campaign needs {want} responses per item, the line has {n}")


def _external_id(row: dict[str, Any]) -> str:
    value = row.get("id", row.get("prompt_id", ""))
    if value is None:
        return ""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise LineError("id: must be a string or an integer")
    value = str(value).strip()
    if len(value) > 200:
        raise LineError("id: longer than 200 characters")
    return value


def _metadata(row: dict[str, Any], key: str = "metadata") -> dict[str, Any]:
    value = row.get(key, {})
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise LineError(f"{key}: must be an object")
    return value


def _messages(value: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise LineError(f"{where}: must be a list of {{role, content}} messages")
    out: list[dict[str, str]] = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise LineError(f"{where}[{i}]: must be an object with role and content")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise LineError(f"{where}[{i}].role: must be one of {', '.join(ROLES)}, not {role!r}")
        if not isinstance(content, str):
            raise LineError(f"{where}[{i}].content: must be a string")
        out.append({"role": role, "content": content})
    return out


def _conversation(value: Any, where: str) -> list[dict[str, str]]:
    """A prompt: a non-empty message list (or a string, taken as one user message)."""
    if isinstance(value, str):
        if not value.strip():
            raise LineError(f"{where}: is empty")
        return [{"role": "user", "content": value}]
    messages = _messages(value, where)
    if not messages:
        raise LineError(f"{where}: has no messages")
    if messages[-1]["role"] == "assistant":
        raise LineError(f"{where}: must end with a user (or system) turn, not an assistant reply")
    return messages


def _parse_arbiter(row: dict[str, Any], line: int) -> ItemRecord:
    if "messages" in row:
        messages = _conversation(row["messages"], "messages")
    elif "prompt" in row:
        messages = _conversation(row["prompt"], "prompt")
    else:
        raise LineError("messages: missing (give the conversation as messages, or prompt as a string)")
    raw_responses = row.get("responses")
    if not isinstance(raw_responses, list) or not raw_responses:
        raise LineError("responses: must be a non-empty list")
    responses = []
    for i, r in enumerate(raw_responses):
        if isinstance(r, str):
            r = {"content": r}
        if not isinstance(r, dict):
            raise LineError(f"responses[{i}]: must be an object with content (and model)")
        content, model = r.get("content"), r.get("model", "")
        if not isinstance(content, str):
            raise LineError(f"responses[{i}].content: must be a string")
        if model is None:
            model = ""
        if not isinstance(model, str) or len(model) > 200:
            raise LineError(f"responses[{i}].model: must be a string of at most 200 characters")
        responses.append(ResponseRecord(content=content, model=model, metadata=_metadata(r)))
    priority = row.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool) or abs(priority) > 2**31 - 1:
        raise LineError("priority: must be an integer")
    return ItemRecord(
        line=line,
        format="arbiter",
        external_id=_external_id(row),
        messages=messages,
        responses=responses,
        metadata=_metadata(row),
        priority=priority,
        gold=_gold(row.get("gold"), len(responses)),
    )


def _gold(value: Any, n_responses: int) -> dict[str, Any] | None:
    """A gold answer: {"preferred": index} or {"outcome": "tie" | "both_bad"}."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise LineError('gold: must be an object like {"preferred": 0} or {"outcome": "tie"}')
    if "preferred" in value:
        idx = value["preferred"]
        if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < n_responses:
            raise LineError(f"gold.preferred: must be a response index from 0 to {n_responses - 1}")
        return {"outcome": "preferred", "preferred": idx}
    if value.get("outcome") in ("tie", "both_bad"):
        return {"outcome": value["outcome"]}
    raise LineError('gold: must be {"preferred": index} or {"outcome": "tie" | "both_bad"}')


def _reply(value: Any, where: str) -> str:
    """A TRL completion: a string, or a list holding one assistant message."""
    if isinstance(value, str):
        return value
    messages = _messages(value, where)
    if len(messages) != 1 or messages[0]["role"] != "assistant":
        raise LineError(f"{where}: must hold exactly one assistant message (got {len(messages)} messages)")
    return messages[0]["content"]


def _split_shared(chosen: list[dict[str, str]], rejected: list[dict[str, str]], where: str) -> tuple[list, str, str]:
    """Split two conversations into their shared head and each one's final assistant reply."""
    k = 0
    while k < min(len(chosen), len(rejected)) and chosen[k] == rejected[k]:
        k += 1
    # When both end in the same reply, split before it: the two identical replies are then
    # refused by `_check_distinct_replies`, naming them.
    if k == len(chosen) or k == len(rejected):
        k -= 1
    head, tail_c, tail_r = chosen[:k], chosen[k:], rejected[k:]
    for name, tail in (("chosen", tail_c), ("rejected", tail_r)):
        if len(tail) != 1 or tail[0]["role"] != "assistant":
            roles = "/".join(m["role"] for m in tail) or "nothing"
            raise LineError(
                f"{name}: after the conversation it shares with the other side it must end in one "
                f"assistant reply, but it ends in {roles} ({where})"
            )
    if not head or head[-1]["role"] == "assistant":
        raise LineError(f"chosen/rejected: share no conversation ending in a user turn ({where})")
    return head, tail_c[0]["content"], tail_r[0]["content"]


def _pair_record(row: dict[str, Any], line: int, fmt: str, messages: list, chosen: str, rejected: str) -> ItemRecord:
    meta = {k: v for k, v in row.items() if k not in {"prompt", "chosen", "rejected", "id", "prompt_id"}}
    return ItemRecord(
        line=line,
        format=fmt,
        external_id=_external_id(row),
        messages=messages,
        responses=[
            ResponseRecord(content=chosen, model=_model(row, "chosen"), metadata={"source_label": "chosen"}),
            ResponseRecord(content=rejected, model=_model(row, "rejected"), metadata={"source_label": "rejected"}),
        ],
        metadata={"source_format": fmt, **meta},
    )


def _model(row: dict[str, Any], side: str) -> str:
    value = row.get(f"{side}_model", "")
    return value if isinstance(value, str) else ""


def _parse_trl(row: dict[str, Any], line: int) -> ItemRecord:
    for key in ("chosen", "rejected"):
        if key not in row:
            raise LineError(f"{key}: missing")
    if "prompt" in row:
        messages = _conversation(row["prompt"], "prompt")
        chosen = _reply(row["chosen"], "chosen")
        rejected = _reply(row["rejected"], "rejected")
    else:
        c = _messages(row["chosen"], "chosen")
        r = _messages(row["rejected"], "rejected")
        messages, chosen, rejected = _split_shared(c, r, "implicit prompt")
    if "margin" in row and (not isinstance(row["margin"], int | float) or isinstance(row["margin"], bool)):
        raise LineError("margin: must be a number")
    return _pair_record(row, line, "trl", messages, chosen, rejected)


def split_hh_transcript(text: str, where: str) -> list[dict[str, str]]:
    """Split an HH transcript into messages; consecutive turns of one speaker are merged."""
    if not isinstance(text, str):
        raise LineError(f"{where}: must be a string transcript")
    if not text.startswith("\n\n"):
        text = "\n\n" + text.lstrip()
    parts = _HH_TURN.split(text)
    if parts[0].strip():
        raise LineError(f"{where}: text before the first 'Human:' turn")
    messages: list[dict[str, str]] = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        role = _HH_ROLE[speaker]
        if messages and messages[-1]["role"] == role:
            # A speaker marker inside a turn ("...  Human: ...") can leave two turns of one
            # speaker in a row; they are one message.
            messages[-1]["content"] += f"\n\n{speaker}: {content}"
        else:
            messages.append({"role": role, "content": content})
    if not messages:
        raise LineError(f"{where}: no 'Human:' / 'Assistant:' turns found")
    if messages[0]["role"] != "user":
        raise LineError(f"{where}: must start with a 'Human:' turn")
    return messages


def _parse_hh(row: dict[str, Any], line: int) -> ItemRecord:
    for key in ("chosen", "rejected"):
        if not isinstance(row.get(key), str):
            raise LineError(f"{key}: missing or not a transcript string")
    c = split_hh_transcript(row["chosen"], "chosen")
    r = split_hh_transcript(row["rejected"], "rejected")
    messages, chosen, rejected = _split_shared(c, r, "HH transcripts")
    return _pair_record(row, line, "hh", messages, chosen, rejected)
