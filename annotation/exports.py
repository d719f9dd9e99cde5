"""Exports of datasets and judgments in the formats TRL, OpenRLHF and `datasets` load as they are.

Every export streams from stored rows (`DatasetComparison`, `Judgment`) in constant memory: a
generator of plain rows per kind, turned into JSONL chunks, or into Parquet row groups written
to a temporary file. Nothing is recomputed; a dataset's exports are as immutable as the dataset.

Under ASGI a synchronous iterator given to `StreamingHttpResponse` is read into a list before
the first byte is sent (Django's fallback), so `stream_response` hands ASGI an asynchronous
iterator that pulls a few chunks at a time from the generator in the request's sync thread.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, StreamingHttpResponse

from annotation.models import Campaign, Dataset, DatasetComparison, Judgment, Response
from annotation.pseudonyms import annotator_pseudonym
from annotation.selectors import dataset_judgments

FORMATS = ("jsonl", "parquet")
CONTENT_TYPES = {"jsonl": "application/jsonl", "parquet": "application/vnd.apache.parquet"}
_DB_CHUNK = 500  # rows fetched per database round trip (bounds the memory of a stream)
_JSONL_CHUNK_BYTES = 64 * 1024  # bytes per streamed chunk
_PARQUET_ROW_GROUP = 5000
_ASGI_BATCH = 8  # chunks pulled per hop to the sync thread


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"role": str(m.get("role", "")), "content": str(m.get("content", ""))} for m in messages]


# --- rows per kind ------------------------------------------------------------------------------


def held_back_items(dataset: Dataset) -> set[int]:
    """Return the ids of the items the training exports leave out: those flagged (unsafe, private
    data, broken) by at least `flag_min_annotators` annotators, unless the dataset keeps them."""
    flagged = (dataset.stats or {}).get("flagged") or {}
    if flagged.get("kept", True):
        return set()
    return {f["item_id"] for f in flagged.get("items", ())}


def _comparisons(dataset: Dataset, *fields: str, decided_only: bool = False, training: bool = False) -> Iterator[tuple]:
    """The stored rows in order. `decided_only`: decided pairs only (no tie, no undecided row).
    `training`: also without the flagged items the dataset holds back."""
    qs = DatasetComparison.objects.filter(dataset=dataset)
    if decided_only:
        qs = qs.filter(outcome=DatasetComparison.Outcome.CHOSEN)
    if training and (held := held_back_items(dataset)):
        qs = qs.exclude(item_id__in=held)
    return qs.order_by("position").values_list(*fields).iterator(chunk_size=_DB_CHUNK)


def _preference_pairs(dataset: Dataset) -> Iterator[tuple[Any, str, str, float]]:
    """(prompt, chosen, rejected, margin): the decided comparisons, then one pair per rewrite
    (the annotator's rewrite preferred over the reply it rewrote, margin 0)."""
    yield from _comparisons(dataset, "prompt", "chosen_text", "rejected_text", "margin", decided_only=True,
                            training=True)
    for prompt, edited, original in _rewrites(dataset):
        yield prompt, edited, original, 0.0


def _rewrites(dataset: Dataset) -> Iterator[tuple[Any, str, str]]:
    """(prompt, rewrite, the reply it rewrote) for each rewrite among the dataset's judgments."""
    qs = dataset_judgments(dataset=dataset).filter(item__is_gold=False).exclude(edited_response="")
    if held := held_back_items(dataset):
        qs = qs.exclude(item_id__in=held)
    rows = qs.values_list("item__prompt__messages", "edited_response", "answer", "preferred_response_id")
    batch: list[tuple] = []
    for row in itertools.chain(rows.iterator(chunk_size=_DB_CHUNK), [None]):
        if row is not None:
            batch.append(row)
            if len(batch) < _DB_CHUNK:
                continue
        ids = {(answer or {}).get("edited_response_id") or preferred for _, _, answer, preferred in batch}
        texts = dict(Response.objects.filter(pk__in=ids - {None}).values_list("pk", "content"))
        for messages, edited, answer, preferred in batch:
            original = texts.get((answer or {}).get("edited_response_id") or preferred)
            if original is not None and original != edited:
                yield messages, edited, original
        batch = []


def preference_rows(dataset: Dataset) -> Iterator[dict]:
    """TRL preference, conversational, explicit prompt: prompt / chosen / rejected / margin (ties
    left out; each rewrite adds a pair preferring it over the reply it rewrote)."""
    for prompt, chosen, rejected, margin in _preference_pairs(dataset):
        yield {"prompt": _messages(prompt), "chosen": _assistant(chosen), "rejected": _assistant(rejected),
               "margin": margin}


def implicit_rows(dataset: Dataset) -> Iterator[dict]:
    """TRL preference, implicit prompt: chosen / rejected are whole conversations ending in the reply."""
    for prompt, chosen, rejected, margin in _preference_pairs(dataset):
        head = _messages(prompt)
        yield {"chosen": head + _assistant(chosen), "rejected": head + _assistant(rejected), "margin": margin}


def kto_rows(dataset: Dataset) -> Iterator[dict]:
    """KTO (unpaired): one row per response of an item that won or lost more comparisons than not.

    In a pairwise campaign that is the chosen response (label true) and the rejected one (label
    false); in a ranking, a middle response that won as often as it lost is left out.
    """
    rows = _comparisons(dataset, "item_id", "prompt", "chosen_response_id", "chosen_text", "rejected_response_id",
                        "rejected_text", decided_only=True, training=True)
    for _, group in itertools.groupby(rows, key=lambda r: r[0]):
        score: dict[int, int] = {}
        texts: dict[int, str] = {}
        prompt = None
        for _item, messages, chosen_id, chosen, rejected_id, rejected in group:
            prompt = messages
            score[chosen_id] = score.get(chosen_id, 0) + 1
            score[rejected_id] = score.get(rejected_id, 0) - 1
            texts[chosen_id], texts[rejected_id] = chosen, rejected
        for response_id, s in score.items():
            if s:
                yield {"prompt": _messages(prompt), "completion": _assistant(texts[response_id]), "label": s > 0}


def prompt_rows(dataset: Dataset) -> Iterator[dict]:
    """Prompt-only (for online methods: PPO, RLOO, GRPO): each item's conversation once."""
    for _, group in itertools.groupby(_comparisons(dataset, "item_id", "prompt", training=True), key=lambda r: r[0]):
        yield {"prompt": _messages(next(group)[1])}


def comparison_rows(dataset: Dataset) -> Iterator[dict]:
    """Every stored row, ties, undecided pairs and flagged items included (not a training export),
    with ids, model names, confidence and judgment counts."""
    for (item_id, prompt, chosen_id, chosen, chosen_model, rejected_id, rejected, rejected_model, outcome, margin,
         confidence, n) in _comparisons(
        dataset, "item_id", "prompt", "chosen_response_id", "chosen_text", "chosen_model", "rejected_response_id",
        "rejected_text", "rejected_model", "outcome", "margin", "confidence", "n_judgments",
    ):
        yield {"item_id": item_id, "prompt": _messages(prompt), "chosen": _assistant(chosen),
               "rejected": _assistant(rejected), "chosen_response_id": chosen_id, "rejected_response_id": rejected_id,
               "chosen_model": chosen_model, "rejected_model": rejected_model, "outcome": outcome, "margin": margin,
               "confidence": confidence, "n_judgments": n}


def sft_rows(dataset: Dataset) -> Iterator[dict]:
    """SFT from rewrites: the conversation plus the annotator's edited reply, one row per edit
    (flagged items held back as in every training export)."""
    qs = dataset_judgments(dataset=dataset).filter(item__is_gold=False).exclude(edited_response="")
    if held := held_back_items(dataset):
        qs = qs.exclude(item_id__in=held)
    for messages, edited in qs.values_list("item__prompt__messages", "edited_response").iterator(chunk_size=_DB_CHUNK):
        yield {"messages": _messages(messages) + _assistant(edited)}


_JUDGMENT_FIELDS = (
    "pk", "item_id", "item__prompt_id", "annotator_id", "outcome", "preferred_response_id", "strength", "answer",
    "rationale", "edited_response", "display_order", "time_taken_ms", "campaign_version", "item__is_gold",
    "gold_correct", "supersedes_id", "created_at",
)


def judgment_rows(judgments) -> Iterator[dict]:
    """Raw judgments with pseudonymous annotators, display order (ids and models), timing and answer."""
    rows = judgments.order_by("pk").values_list(*_JUDGMENT_FIELDS).iterator(chunk_size=_DB_CHUNK)
    pseudonyms: dict[int, str] = {}
    while batch := list(itertools.islice(rows, _DB_CHUNK)):
        shown = {rid for row in batch for rid in (row[10] or [])}
        models = dict(Response.objects.filter(pk__in=shown).values_list("pk", "model_name"))
        for (pk, item_id, prompt_id, annotator_id, outcome, preferred, strength, answer, rationale, edited, order,
             time_ms, version, is_gold, gold_correct, supersedes, created) in batch:
            if annotator_id not in pseudonyms:
                pseudonyms[annotator_id] = annotator_pseudonym(annotator_id)
            yield {
                "judgment_id": pk, "item_id": item_id, "prompt_id": prompt_id, "annotator": pseudonyms[annotator_id],
                "outcome": outcome, "preferred_response_id": preferred, "strength": strength,
                "answer": answer or {}, "rationale": rationale, "edited_response": edited,
                "display_order": list(order or []), "display_models": [models.get(r, "") for r in order or []],
                "time_taken_ms": time_ms, "campaign_version": version, "is_gold": is_gold,
                "gold_correct": gold_correct, "supersedes_id": supersedes, "created_at": created.isoformat(),
            }


def dataset_judgment_rows(dataset: Dataset) -> Iterator[dict]:
    """The judgments the dataset was built from (current at its snapshot), gold checks included."""
    return judgment_rows(dataset_judgments(dataset=dataset))


def campaign_judgment_rows(campaign: Campaign) -> Iterator[dict]:
    """Every judgment of the campaign as it stands now, corrections and the judgments they replaced."""
    return judgment_rows(Judgment.objects.filter(campaign=campaign))


def leaderboard_rows(dataset: Dataset) -> Iterator[dict]:
    """The dataset's Bradley–Terry leaderboard: model, score, ci_low, ci_high, rank, n."""
    for r in (dataset.leaderboard or {}).get("rows", []):
        yield {k: r[k] for k in ("model", "score", "ci_low", "ci_high", "rank", "n")}


# --- kinds ----------------------------------------------------------------------------------------


def _pa():
    import pyarrow as pa  # imported when a Parquet file is written, not at start-up

    return pa


def _msgs_type():
    pa = _pa()
    return pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


@dataclass(frozen=True)
class ExportKind:
    name: str
    title: str
    description: str
    rows: Callable[[Any], Iterator[dict]]
    schema: Callable[[], Any]  # pyarrow schema, built lazily
    json_columns: tuple[str, ...] = ()  # written as JSON text in Parquet (free-form objects)


def _schema(*fields: tuple[str, Callable[[], Any]]) -> Callable[[], Any]:
    return lambda: _pa().schema([(name, t()) for name, t in fields])


def _s():
    return _pa().string()


def _f():
    return _pa().float64()


def _i():
    return _pa().int64()


def _b():
    return _pa().bool_()


def _ids():
    return _pa().list_(_pa().int64())


def _strs():
    return _pa().list_(_pa().string())


KINDS: dict[str, ExportKind] = {
    k.name: k
    for k in (
        ExportKind(
            "preference", "TRL preference (conversational, explicit prompt)",
            "`prompt` (messages), `chosen` / `rejected` (one assistant message each), `margin`. Loads as it is in "
            "TRL's RewardTrainer and DPOTrainer, and in OpenRLHF with `--prompt_key prompt --chosen_key chosen "
            "--rejected_key rejected --apply_chat_template`. Only decided pairs: ties, undecided pairs and flagged "
            "items are left out; each rewrite adds a row preferring it over the reply it rewrote (margin 0).",
            preference_rows,
            _schema(("prompt", _msgs_type), ("chosen", _msgs_type), ("rejected", _msgs_type), ("margin", _f)),
        ),
        ExportKind(
            "implicit", "TRL preference (conversational, implicit prompt)",
            "`chosen` / `rejected`: the whole conversation ending in the reply; `margin`. Decided pairs only "
            "(ties, undecided pairs and flagged items left out); rewrites added as in the explicit form.",
            implicit_rows, _schema(("chosen", _msgs_type), ("rejected", _msgs_type), ("margin", _f)),
        ),
        ExportKind(
            "kto", "KTO (unpaired preference)",
            "`prompt`, `completion` (one assistant message), `label` (true: desirable). Each response of an item "
            "once: desirable if it won more of its decided comparisons than it lost, undesirable if it lost more "
            "(ties, undecided pairs and flagged items left out).",
            kto_rows, _schema(("prompt", _msgs_type), ("completion", _msgs_type), ("label", _b)),
        ),
        ExportKind(
            "prompt", "Prompt-only",
            "`prompt`: each item's conversation once (for PPO, RLOO, GRPO); flagged items left out.",
            prompt_rows, _schema(("prompt", _msgs_type)),
        ),
        ExportKind(
            "sft", "SFT from rewrites",
            "`messages`: the conversation plus the annotator's edited reply, one row per rewrite (TRL SFTTrainer); "
            "flagged items left out.",
            sft_rows, _schema(("messages", _msgs_type)),
        ),
        ExportKind(
            "comparisons", "Comparisons (every row, ties and undecided pairs included)",
            "`item_id`, `prompt`, `chosen`, `rejected`, response ids, model names, `outcome` (chosen | tie | "
            "undecided: not a preference, held back from training), "
            "`margin`, `confidence` (consensus probability), `n_judgments`.",
            comparison_rows,
            _schema(("item_id", _i), ("prompt", _msgs_type), ("chosen", _msgs_type), ("rejected", _msgs_type),
                    ("chosen_response_id", _i), ("rejected_response_id", _i), ("chosen_model", _s),
                    ("rejected_model", _s), ("outcome", _s), ("margin", _f), ("confidence", _f),
                    ("n_judgments", _i)),
        ),
        ExportKind(
            "judgments", "Raw judgments",
            "One row per judgment the dataset read: pseudonymous `annotator` (a stable HMAC of the user id), "
            "`outcome`, `preferred_response_id`, `strength`, `answer` (kind-specific, against response ids; JSON "
            "text in Parquet), `rationale`, `edited_response`, `display_order` and `display_models` (left to "
            "right), `time_taken_ms`, `campaign_version`, `is_gold`, `gold_correct`, `supersedes_id`, `created_at`.",
            dataset_judgment_rows,
            _schema(("judgment_id", _i), ("item_id", _i), ("prompt_id", _i), ("annotator", _s), ("outcome", _s),
                    ("preferred_response_id", _i), ("strength", _i), ("answer", _s), ("rationale", _s),
                    ("edited_response", _s), ("display_order", _ids), ("display_models", _strs),
                    ("time_taken_ms", _i), ("campaign_version", _i), ("is_gold", _b), ("gold_correct", _b),
                    ("supersedes_id", _i), ("created_at", _s)),
            json_columns=("answer",),
        ),
        ExportKind(
            "leaderboard", "Leaderboard",
            "`model`, `score` (Bradley–Terry, Elo scale), `ci_low` / `ci_high` (95% bootstrap interval), `rank` "
            "(1 + models whose interval lies wholly above), `n` (judgments the model took part in).",
            leaderboard_rows,
            _schema(("model", _s), ("score", _f), ("ci_low", _f), ("ci_high", _f), ("rank", _i), ("n", _i)),
        ),
    )
}


# --- encoders ---------------------------------------------------------------------------------------


def jsonl_chunks(rows: Iterable[dict], *, chunk_bytes: int = _JSONL_CHUNK_BYTES) -> Iterator[bytes]:
    """Yield the rows as JSON Lines, a few tens of kilobytes at a time."""
    buffer: list[bytes] = []
    size = 0
    for row in rows:
        line = (json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        buffer.append(line)
        size += len(line)
        if size >= chunk_bytes:
            yield b"".join(buffer)
            buffer, size = [], 0
    if buffer:
        yield b"".join(buffer)


class _ChunkSink:
    """A write-only file for ParquetWriter that hands over what was written so far, so a
    Parquet file can be sent row group by row group instead of after the whole file."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def parquet_chunks(rows: Iterable[dict], kind: ExportKind, *, row_group: int = _PARQUET_ROW_GROUP) -> Iterator[bytes]:
    """Yield a Parquet file's bytes as it is written: one row group of `row_group` rows at a time,
    then the footer. Memory holds one row group."""
    import pyarrow.parquet as pq

    pa = _pa()
    schema = kind.schema()
    rows = iter(rows)
    sink = _ChunkSink()
    writer = pq.ParquetWriter(sink, schema)
    finished = False
    try:
        while batch := list(itertools.islice(rows, row_group)):
            for column in kind.json_columns:
                for row in batch:
                    row[column] = json.dumps(row[column], ensure_ascii=False, sort_keys=True)
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            if chunk := sink.take():
                yield chunk
        writer.close()
        finished = True
        if tail := sink.take():
            yield tail
    finally:
        if not finished:
            writer.close()


def write_parquet(rows: Iterable[dict], kind: ExportKind, path: str | os.PathLike, *,
                  row_group: int = _PARQUET_ROW_GROUP) -> None:
    """Write the rows to `path` as Parquet, one row group per `row_group` rows."""
    with open(path, "wb") as f:
        for chunk in parquet_chunks(rows, kind, row_group=row_group):
            f.write(chunk)


def export_rows(dataset: Dataset, kind: str) -> Iterator[dict]:
    """Return the rows of one export kind of a ready dataset."""
    return iter(_kind(kind).rows(dataset))


def _kind(kind: str) -> ExportKind:
    if kind not in KINDS:
        from annotation.errors import field_error

        raise field_error("kind", f"must be one of {', '.join(KINDS)}")
    return KINDS[kind]


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        from annotation.errors import field_error

        raise field_error("format", f"must be one of {', '.join(FORMATS)}")


def write_export(dataset: Dataset, kind: str, fmt: str, path: str | os.PathLike) -> Path:
    """Write one export of the dataset to `path` (JSONL or Parquet); return the path.

    For scripts and training code: `write_export(ds, "preference", "jsonl", "/tmp/pref.jsonl")`
    gives a file `datasets.load_dataset("json", data_files=...)` and TRL's trainers load as it is.
    """
    _check_format(fmt)
    spec = _kind(kind)
    path = Path(path)
    if fmt == "jsonl":
        with path.open("wb") as f:
            for chunk in jsonl_chunks(spec.rows(dataset)):
                f.write(chunk)
    else:
        write_parquet(iter(spec.rows(dataset)), spec, str(path))
    return path


# --- HTTP -------------------------------------------------------------------------------------------


async def _async_chunks(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Pull a few chunks at a time from a sync iterator in the request's sync thread (DB access stays there)."""
    take = sync_to_async(lambda: list(itertools.islice(chunks, _ASGI_BATCH)), thread_sensitive=True)
    try:
        while part := await take():
            for chunk in part:
                yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            await sync_to_async(close, thread_sensitive=True)()


def _filename(stem: str, ext: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-").lower()[:120] + f".{ext}"


def stream_response(request: HttpRequest, chunks: Iterator[bytes], *, content_type: str, filename: str,
                    length: int | None = None) -> StreamingHttpResponse:
    """Return a streaming attachment; under ASGI the body is an async iterator (never read whole)."""
    body: Iterator[bytes] | AsyncIterator[bytes] = _async_chunks(chunks) if isinstance(request, ASGIRequest) else chunks
    response = StreamingHttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    if length is not None:
        response["Content-Length"] = str(length)
    return response


def rows_response(request: HttpRequest, rows: Iterable[dict], *, spec: ExportKind, fmt: str, stem: str):
    """Return the rows as a JSONL or Parquet stream."""
    _check_format(fmt)
    if fmt == "jsonl":
        return stream_response(request, jsonl_chunks(rows), content_type=CONTENT_TYPES["jsonl"],
                               filename=_filename(stem, "jsonl"))
    # Streamed as it is written (no Content-Length): the first row group leaves at once, so
    # a large export never waits for its whole file before the first byte.
    return stream_response(request, parquet_chunks(rows, spec), content_type=CONTENT_TYPES["parquet"],
                           filename=_filename(stem, "parquet"))


def dataset_export_response(request: HttpRequest, dataset: Dataset, kind: str, fmt: str):
    """Return one export of a ready dataset as a download."""
    spec = _kind(kind)
    stem = f"{dataset.campaign.name}-v{dataset.version}-{kind}"
    return rows_response(request, spec.rows(dataset), spec=spec, fmt=fmt, stem=stem)


def campaign_judgments_response(request: HttpRequest, campaign: Campaign, fmt: str):
    """Return every judgment of the campaign, as it stands now, as a download."""
    stem = f"{campaign.name}-judgments"
    return rows_response(request, campaign_judgment_rows(campaign), spec=KINDS["judgments"], fmt=fmt, stem=stem)


# --- the dataset card ---------------------------------------------------------------------------------


def _num(x: Any, digits: int = 3) -> str:
    return "n/a" if x is None else (f"{x:.{digits}f}" if isinstance(x, float) else str(x))


def _held_back_section(dataset: Dataset) -> list[str]:
    """The card's account of every comparison that is not a training pair, and why."""
    stats = dataset.stats or {}
    params = dataset.params or {}
    held = stats.get("held_back")
    flagged = stats.get("flagged")
    if held is None and flagged is None:  # built before thresholds and flags were counted
        return []
    lines = ["## Held back from training", "",
             "Only decided pairs reach the training exports (preference, implicit, KTO). Every other judged pair "
             "is counted here with its reason:", "", "| reason | pairs |", "| --- | --- |"]
    held = held or {}
    lines += [
        f"| tie: the consensus preferred neither response{'' if params.get('include_ties', True) else ' (rows left out: include_ties is off)'} "
        f"| {held.get('tie', 0)} |",
        f"| too few judgments: fewer than `min_judgments` = {params.get('min_judgments', 1)} agree with the winner "
        f"| {held.get('too_few_judgments', 0)} |",
        f"| below confidence: consensus confidence under `min_confidence` = {params.get('min_confidence', 0.0)} "
        f"| {held.get('below_confidence', 0)} |",
    ]
    flagged = flagged or {}
    items = flagged.get("items") or []
    k = flagged.get("min_annotators", 1)
    if flagged.get("kept", True):
        lines += ["", f"Flagged items (unsafe, private data or broken, by at least {k} annotator(s)): {len(items)}, "
                  "kept in the training exports (`keep_flagged` is on)."]
    else:
        lines += ["", f"Flagged items (unsafe, private data or broken, by at least {k} annotator(s)): {len(items)}, "
                  f"left out of every training export with their {flagged.get('decided_pairs', 0)} decided pair(s) "
                  "(`keep_flagged` is off)."]
    if items:
        lines += ["", "| item | flags (annotators) | annotators |", "| --- | --- | --- |"]
        lines += [f"| {f['item_id']} | {', '.join(f'{name} ({n})' for name, n in f['flags'].items())} | "
                  f"{f['annotators']} |" for f in items]
    lines.append("")
    return lines


def dataset_card(dataset: Dataset) -> str:
    """Return the dataset's card (README.md): provenance, method, counts, quality, formats, license."""
    campaign = dataset.campaign
    stats = dataset.stats or {}
    agreement = stats.get("agreement", {})
    bias = stats.get("position_bias", {})
    consensus = stats.get("consensus", {})
    conf = consensus.get("confidence", {})
    license_line = getattr(settings, "ARBITER_DATASET_LICENSE", "") or (
        "No license was set for this dataset; ask the campaign's owner before you share it. The responses are "
        "model outputs and the judgments were made by the campaign's annotators."
    )
    lines = [
        "---",
        f"pretty_name: {json.dumps(f'{campaign.name} v{dataset.version}')}",
        "tags: [human-feedback, preference, arbiter]",
        "---",
        "",
        f"# {campaign.name} — dataset v{dataset.version}",
        "",
        f"An immutable snapshot of the aggregated comparisons of the Arbiter campaign “{campaign.name}” "
        f"(id {campaign.pk}, {campaign.get_kind_display().lower()}, campaign version {dataset.campaign_version}).",
        "",
        f"- Status: **{dataset.status}**" + (f" — {dataset.error}" if dataset.error else ""),
        f"- Created: {dataset.created_at:%Y-%m-%d %H:%M} UTC"
        + (f", built {dataset.finished_at:%Y-%m-%d %H:%M} UTC" if dataset.finished_at else ""),
        f"- Content hash (sha256 of the canonical rows): `{dataset.content_hash or 'n/a'}`",
        f"- Judgments read: up to judgment id {dataset.last_judgment_id or 'n/a'} (current ones only; later "
        "corrections do not change this snapshot)",
        "",
        "## Aggregation",
        "",
        f"Method: **{dataset.get_method_display()}** (`{dataset.method}`). Parameters:",
        "",
        "| parameter | value |",
        "| --- | --- |",
        *[f"| `{k}` | `{json.dumps(v)}` |" for k, v in sorted((dataset.params or {}).items())],
        "",
        "Consensus is per item (per pair of responses for rankings and ratings, expanded with their rank gap or "
        "score difference as margin). Judgments on gold checks weigh annotators but are not comparisons. A "
        "decided row's `margin` is the mean strength (or rank gap / score difference) of the judgments that "
        "agree with the consensus; a tie has margin 0; `confidence` is the consensus probability of the outcome. A "
        "pair the method leaned on but that fewer than `min_judgments` judgments back, or whose confidence is under "
        "`min_confidence`, is an `undecided` row (margin 0) and never a training pair.",
        "",
        "## Contents",
        "",
        "| items | comparisons | judgments used | annotators | decided | ties | undecided |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| {dataset.item_count} | {dataset.comparison_count} | {dataset.judgment_count} | {dataset.annotator_count} "
        f"| {consensus.get('outcomes', {}).get('chosen', 0)} | {consensus.get('outcomes', {}).get('tie', 0)} "
        f"| {consensus.get('outcomes', {}).get('undecided', 0)} |",
        "",
        *_held_back_section(dataset),
        "## Quality",
        "",
        f"- Krippendorff's alpha: nominal {_num(agreement.get('krippendorff_alpha_nominal'))}, ordinal "
        f"{_num(agreement.get('krippendorff_alpha_ordinal'))} (over {agreement.get('items_with_two_or_more', 0)} "
        "items judged by two or more annotators)",
        f"- Position bias: the response shown first won {_num(bias.get('first_shown_win_rate'))} of "
        f"{bias.get('decisive', 0)} decisive judgments (95% CI {_num(bias.get('ci_low'))}–{_num(bias.get('ci_high'))}, "
        f"p = {_num(bias.get('p_value'))})",
        f"- Consensus confidence: mean {_num(conf.get('mean'))}, median {_num(conf.get('median'))}, "
        f"min {_num(conf.get('min'))}",
        "",
    ]
    annotators = stats.get("annotators") or []
    if annotators:
        lines += ["| annotator (pseudonym) | judgments | reliability | gold correct | first-shown win rate |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| `{a['annotator']}` | {a['judgments']} | {_num(a['reliability'])} | "
                  f"{a['gold_correct']}/{a['gold_total']} | {_num(a['first_shown_win_rate'])} |" for a in annotators]
        lines.append("")
    board = dataset.leaderboard or {}
    lines += ["## Leaderboard", ""]
    if board.get("rows"):
        lines += [f"Bradley–Terry on the individual judgments (ties half a win), Elo scale, 95% bootstrap intervals "
                  f"({board.get('bootstrap_rounds')} rounds); rank counts the models whose interval lies wholly above.",
                  "", "| rank | model | score | 95% CI | n |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {r['rank']} | {r['model']} | {r['score']:.1f} | {r['ci_low']:.1f} – {r['ci_high']:.1f} | {r['n']} |"
                  for r in board["rows"]]
    if board.get("note"):
        lines += ["", board["note"]]
    lines += ["", "## Files and formats", "", "Every export is JSON Lines (`?format=jsonl`) or Parquet "
              "(`?format=parquet`), streamed from the stored rows.", ""]
    lines += [f"- **{k.name}** — {k.title}: {k.description}" for k in KINDS.values()]
    lines += ["", "```python", "from datasets import load_dataset",
              f'ds = load_dataset("json", data_files="{_filename(f"{campaign.name}-v{dataset.version}-preference", "jsonl")}", '
              'split="train")', "```", "", "## License", "", license_line, ""]
    return "\n".join(lines)
