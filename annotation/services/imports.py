"""Imports: validate a file against a campaign, show the report, then commit it all or nothing.

`import_stage` validates an upload and keeps it (under MEDIA_ROOT/imports/<campaign>/) without
writing any item; the manager reads the report; `import_commit` imports the kept file, checking
every line again (the campaign may have changed meanwhile). `items_import` is the all-or-nothing
write used by both, the API and the command line.
"""

import json
import random
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, models, transaction
from django.db.models import F
from django.utils import timezone

from annotation import events
from annotation.core.importing import (
    FORMATS,
    Hygiene,
    ImportReport,
    duplicate_message,
    flag_near_duplicate_prompts,
    parse_jsonl,
)
from annotation.errors import ApplicationError, ConflictError, field_error
from annotation.models import GOLD_TARGET, Campaign, Item, ItemResponse, Prompt, Response
from annotation.services.audit import audit_record

RESPONSES_PER_ITEM = {
    Campaign.Kind.PAIRWISE: (2, 2),
    Campaign.Kind.RANKING: (2, 9),
    Campaign.Kind.RATING: (1, 9),
}
_BATCH = 2000


@dataclass(frozen=True)
class ImportResult:
    items: int
    prompts: int
    responses: int
    formats: dict[str, int]
    skipped: list[tuple[int, str]] = field(default_factory=list)
    skipped_count: int = 0
    warnings: list[tuple[int, str]] = field(default_factory=list)
    warning_count: int = 0


class ImportRejected(ApplicationError):
    """The file had bad lines; nothing was written. `extra["errors"]` lists them."""


def import_hygiene(*, skip_duplicates: bool = False) -> Hygiene:
    """Return the import checks as configured (ARBITER_IMPORT_MAX_MESSAGE_BYTES, ..._REPLY_BYTES)."""
    return Hygiene(
        max_message_bytes=settings.ARBITER_IMPORT_MAX_MESSAGE_BYTES,
        max_reply_bytes=settings.ARBITER_IMPORT_MAX_REPLY_BYTES,
        skip_duplicates=skip_duplicates,
    )


def items_parse(
    *, campaign: Campaign, lines: Iterable[bytes | str], format: str = "auto", skip_duplicates: bool = False
) -> ImportReport:
    """Validate every line against the campaign's kind and what is already stored in it.

    Ids and exact duplicates (by `Item.content_hash`, one indexed query per 900 lines) already
    in the campaign are bad lines, or, for duplicates with `skip_duplicates`, skipped; prompts
    that nearly repeat one in the file or in the campaign are warnings.
    """
    if format not in FORMATS:
        raise ApplicationError(f"format: must be one of {', '.join(FORMATS)}", extra={"fields": {"format": [format]}})
    report = parse_jsonl(
        lines,
        format=format,
        responses_per_item=RESPONSES_PER_ITEM[Campaign.Kind(campaign.kind)],
        hygiene=import_hygiene(skip_duplicates=skip_duplicates),
    )
    ids = [r.external_id for r in report.records if r.external_id]
    taken: set[str] = set()
    for start in range(0, len(ids), 900):
        taken.update(
            Prompt.objects.filter(campaign=campaign, external_id__in=ids[start : start + 900]).values_list(
                "external_id", flat=True
            )
        )
    hashes = [r.content_hash for r in report.records]
    stored: set[str] = set()
    if campaign.item_count or Item.objects.filter(campaign=campaign).exists():
        for start in range(0, len(hashes), 900):
            stored.update(
                Item.objects.filter(campaign=campaign, content_hash__in=hashes[start : start + 900]).values_list(
                    "content_hash", flat=True
                )
            )
    skip: set[int] = set()
    for r in report.records:
        if r.external_id in taken:
            report.add_error(r.line, f"id {r.external_id!r} is already in this campaign")
        if r.content_hash in stored:
            if skip_duplicates:
                report.add_skipped(r.line, "duplicate of an item already in this campaign")
                skip.add(r.line)
            else:
                report.add_error(r.line, duplicate_message("an item already in this campaign"))
    if skip:
        report.drop_records(skip)
        if not report.records and not report.error_count:
            report.add_error(0, "every item in the file is already in this campaign; nothing to import")
    report.errors.sort(key=lambda e: e[0])
    report.skipped.sort(key=lambda e: e[0])
    if report.error_count:
        return report
    flag_near_duplicate_prompts(report, existing=_stored_prompts(campaign))
    return report


def _stored_prompts(campaign: Campaign) -> Iterable[tuple[str, list[dict[str, str]]]]:
    for pk, external_id, messages in (
        Prompt.objects.filter(campaign=campaign).order_by("pk").values_list("pk", "external_id", "messages").iterator(
            chunk_size=2000
        )
    ):
        yield (f"prompt {external_id!r}" if external_id else f"prompt #{pk}"), messages


def report_error(report: ImportReport) -> ImportRejected:
    """Return the error that lists every bad line of a failed import."""
    return ImportRejected(
        report.summary(),
        extra={
            "error_count": report.error_count,
            "errors": [{"line": line, "message": msg} for line, msg in report.errors],
        },
    )


@transaction.atomic
def items_import(
    *,
    campaign: Campaign,
    lines: Iterable[bytes | str],
    format: str = "auto",
    actor: AbstractBaseUser | None = None,
    source: str = "",
    skip_duplicates: bool = False,
) -> ImportResult:
    """Import JSONL lines as items, all or nothing: any bad line and nothing is written.

    Works on a draft, active or paused campaign: items added to a running campaign are served
    at once. `source` (a file name) goes into the audit entry. With `skip_duplicates`, lines
    that repeat an earlier line or a stored item are left out, and counted and listed in the
    result (and the audit entry) instead of refusing the file.
    """
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if campaign.status == Campaign.Status.CLOSED:
        raise ConflictError("This campaign is closed; open a new campaign for more data.")
    report = items_parse(campaign=campaign, lines=lines, format=format, skip_duplicates=skip_duplicates)
    if not report.ok:
        raise report_error(report)
    regular = sum(1 for r in report.records if r.gold is None)
    # Written before the rows: on SQLite this takes the write lock that `_take_ids` relies on.
    Campaign.objects.filter(pk=campaign.pk).update(
        item_count=F("item_count") + regular, wanted_judgments=F("wanted_judgments") + regular * campaign.overlap
    )
    result = _insert(campaign, report)
    audit_record(
        actor=actor, campaign=campaign, action="import.commit", target=f"campaign:{campaign.pk}",
        after={"items": result.items, "gold": result.items - regular, "responses": result.responses,
               "formats": result.formats, "skipped_duplicates": result.skipped_count,
               "near_duplicate_warnings": result.warning_count, **({"source": source} if source else {})},
    )
    events.campaign_changed(campaign_id=campaign.pk)
    return result


# --- validate, report, then commit --------------------------------------------------------------

STAGE_MAX_AGE_SECONDS = 24 * 3600
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


@dataclass(frozen=True)
class StagedImport:
    """An upload that was validated: its report, and (when it is clean) the token to commit it."""

    token: str
    filename: str
    format: str
    report: ImportReport
    skip_duplicates: bool = False

    @property
    def ok(self) -> bool:
        return self.report.ok

    @property
    def formats_text(self) -> str:
        """E.g. "3 arbiter, 1 trl": how many items each format gave."""
        return ", ".join(f"{n} {fmt}" for fmt, n in sorted(self.report.formats.items()))


def _stage_dir(campaign: Campaign) -> Path:
    return Path(settings.MEDIA_ROOT) / "imports" / str(campaign.pk)


def _stage_paths(campaign: Campaign, token: str) -> tuple[Path, Path]:
    base = _stage_dir(campaign)
    return base / f"{token}.jsonl", base / f"{token}.json"


def _sweep_stale(directory: Path) -> None:
    cutoff = time.time() - STAGE_MAX_AGE_SECONDS
    for path in directory.glob("*.json*"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except FileNotFoundError:  # swept by a concurrent upload
            pass


def import_stage(
    *, campaign: Campaign, upload: IO[bytes], filename: str = "", format: str = "auto", skip_duplicates: bool = False
) -> StagedImport:
    """Validate an uploaded file against the campaign and keep it for `import_commit`; store no item.

    Returns the report either way. A clean file is kept for a day under a random token; a file
    with bad lines is not kept (nothing can be committed from it).
    """
    if format not in FORMATS:
        raise field_error("format", f"must be one of {', '.join(FORMATS)}")
    campaign = Campaign.objects.get(pk=campaign.pk)
    if campaign.status == Campaign.Status.CLOSED:
        raise ConflictError("This campaign is closed; open a new campaign for more data.")
    directory = _stage_dir(campaign)
    directory.mkdir(parents=True, exist_ok=True)
    _sweep_stale(directory)
    token = secrets.token_urlsafe(24)
    data_path, meta_path = _stage_paths(campaign, token)
    with data_path.open("wb") as out:
        while chunk := upload.read(1024 * 1024):
            out.write(chunk)
    with data_path.open("rb") as fh:
        report = items_parse(campaign=campaign, lines=fh, format=format, skip_duplicates=skip_duplicates)
    if not report.ok:
        data_path.unlink(missing_ok=True)
        return StagedImport(token="", filename=filename, format=format, report=report, skip_duplicates=skip_duplicates)
    meta_path.write_text(json.dumps({"format": format, "filename": filename, "items": len(report.records),
                                     "skip_duplicates": skip_duplicates}))
    return StagedImport(token=token, filename=filename, format=format, report=report, skip_duplicates=skip_duplicates)


def import_commit(*, campaign: Campaign, token: str, actor: AbstractBaseUser | None) -> ImportResult:
    """Import a file kept by `import_stage`, all or nothing (every line is checked again), then forget it."""
    data_path, meta_path = _stage_paths(campaign, token) if _TOKEN.match(token or "") else (None, None)
    if data_path is None or not data_path.exists() or not meta_path.exists():
        raise ConflictError(
            "This upload is no longer waiting to be imported: it was imported already, or it was checked "
            "more than a day ago. Upload the file again.",
            extra={"fields": {"token": ["no file is waiting under this token"]}},
        )
    meta = json.loads(meta_path.read_text())
    with data_path.open("rb") as fh:
        result = items_import(campaign=campaign, lines=fh, format=meta["format"], actor=actor,
                              source=meta.get("filename", ""), skip_duplicates=meta.get("skip_duplicates", False))
    data_path.unlink(missing_ok=True)
    meta_path.unlink(missing_ok=True)
    return result


def _insert(campaign: Campaign, report: ImportReport) -> ImportResult:
    """Write the records' prompts, responses, items and links in four bulk statements per batch.

    Ids are taken up front (PostgreSQL: one `nextval` over `generate_series`; SQLite: past the
    table's high-water mark, under the write lock the caller already holds), so the rows go in
    without round trips: COPY on PostgreSQL, `executemany` on SQLite. Django's `bulk_create`
    spends most of its time preparing each value of each of the ~30,000 rows of 5,000 items.
    """
    records = report.records
    rng = random.Random()
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    small: dict[tuple, str] = {}

    def dumps(value: Any) -> str:
        # Most metadata is one of a few small dicts ({"source_label": "chosen"}): encode each once.
        if isinstance(value, dict) and len(value) <= 4:
            try:
                key = tuple((k, type(v), v) for k, v in value.items())  # 1, 1.0 and True stay apart
                return small[key] if key in small else small.setdefault(key, encode(value))
            except TypeError:  # a value that cannot be a dict key (a list, a dict)
                pass
        return encode(value)

    n_responses = sum(len(r.responses) for r in records)
    prompt_ids = _take_ids(Prompt, len(records))
    response_ids = _take_ids(Response, n_responses)
    item_ids = _take_ids(Item, len(records))
    link_ids = _take_ids(ItemResponse, n_responses)
    prompts, responses, items, links = [], [], [], []
    cursor = 0
    for prompt_id, item_id, r in zip(prompt_ids, item_ids, records, strict=True):
        prompts.append({"id": prompt_id, "campaign_id": campaign.pk, "external_id": r.external_id,
                        "messages": dumps(r.messages), "metadata": dumps(r.metadata), "created_at": now})
        mine = response_ids[cursor : cursor + len(r.responses)]
        for pos, (response_id, resp) in enumerate(zip(mine, r.responses, strict=True)):
            responses.append({"id": response_id, "prompt_id": prompt_id, "content": resp.content,
                              "model_name": resp.model, "metadata": dumps(resp.metadata), "created_at": now})
            links.append({"id": link_ids[cursor + pos], "item_id": item_id, "response_id": response_id,
                          "position": pos})
        cursor += len(r.responses)
        gold = None
        if r.gold:
            # A gold answer names a response by its index in the line; store its id instead.
            gold = dict(r.gold) if r.gold["outcome"] != "preferred" else {
                "outcome": "preferred", "preferred_response_id": mine[r.gold["preferred"]]}
        items.append({"id": item_id, "campaign_id": campaign.pk, "prompt_id": prompt_id, "priority": r.priority,
                      "gold": dumps(gold) if gold else None, "is_gold": gold is not None,
                      "target": GOLD_TARGET if gold else campaign.overlap, "judgment_count": 0, "lease_count": 0,
                      "random_key": rng.random(), "content_hash": r.content_hash, "created_at": now})
    for model, rows in ((Prompt, prompts), (Response, responses), (Item, items), (ItemResponse, links)):
        _write_rows(model, rows)
    return ImportResult(
        items=len(records), prompts=len(records), responses=n_responses, formats=dict(report.formats),
        skipped=report.skipped, skipped_count=report.skipped_count,
        warnings=report.warnings, warning_count=report.warning_count,
    )


def _take_ids(model: type[models.Model], n: int) -> list[int]:
    """Reserve n primary keys of `model`'s table for rows this transaction is about to insert."""
    if not n:
        return []
    table = model._meta.db_table
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [table, n])
            return [row[0] for row in cur.fetchall()]
        # SQLite: the caller holds the write lock (it has written already), so nobody else inserts
        # until commit; AUTOINCREMENT's sqlite_sequence keeps ids of deleted rows from coming back.
        cur.execute(f'SELECT max(id) FROM "{table}"')
        top = cur.fetchone()[0] or 0
        cur.execute("SELECT seq FROM sqlite_sequence WHERE name = %s", [table])
        row = cur.fetchone()
        start = max(top, row[0] if row else 0) + 1
        return list(range(start, start + n))


def _write_rows(model: type[models.Model], rows: list[dict[str, Any]]) -> None:
    """Insert rows (dicts by column) into `model`'s table; columns not given get their field's default."""
    if not rows:
        return
    given = list(rows[0])
    rest = [f for f in model._meta.concrete_fields if f.column not in given]
    constants = [f.get_db_prep_save(f.get_default(), connection) for f in rest]
    columns = [*given, *(f.column for f in rest)]
    table = model._meta.db_table
    names = ", ".join(f'"{c}"' for c in columns)
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            with cur.cursor.copy(f'COPY "{table}" ({names}) FROM STDIN') as copy:
                for row in rows:
                    copy.write_row([*row.values(), *constants])
        else:
            marks = ", ".join(["%s"] * len(columns))
            for start in range(0, len(rows), _BATCH):
                cur.executemany(
                    f'INSERT INTO "{table}" ({names}) VALUES ({marks})',
                    [(*row.values(), *constants) for row in rows[start : start + _BATCH]],
                )
