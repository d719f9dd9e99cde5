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
from typing import IO

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F

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
    result = _insert(campaign, report)
    regular = sum(1 for r in report.records if r.gold is None)
    Campaign.objects.filter(pk=campaign.pk).update(
        item_count=F("item_count") + regular, wanted_judgments=F("wanted_judgments") + regular * campaign.overlap
    )
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
    records = report.records
    rng = random.Random()
    n_responses = 0
    for start in range(0, len(records), _BATCH):
        chunk = records[start : start + _BATCH]
        prompts = Prompt.objects.bulk_create(
            [
                Prompt(campaign=campaign, external_id=r.external_id, messages=r.messages, metadata=r.metadata)
                for r in chunk
            ]
        )
        responses = Response.objects.bulk_create(
            [
                Response(prompt=p, content=resp.content, model_name=resp.model, metadata=resp.metadata)
                for p, r in zip(prompts, chunk, strict=True)
                for resp in r.responses
            ]
        )
        n_responses += len(responses)
        items = Item.objects.bulk_create(
            [
                Item(
                    campaign=campaign,
                    prompt=p,
                    priority=r.priority,
                    gold=dict(r.gold) if r.gold else None,
                    is_gold=r.gold is not None,
                    target=GOLD_TARGET if r.gold else campaign.overlap,
                    random_key=rng.random(),
                    content_hash=r.content_hash,
                )
                for p, r in zip(prompts, chunk, strict=True)
            ]
        )
        links, cursor = [], 0
        for item, r in zip(items, chunk, strict=True):
            item_responses = responses[cursor : cursor + len(r.responses)]
            cursor += len(r.responses)
            links.extend(
                ItemResponse(item=item, response=resp, position=pos) for pos, resp in enumerate(item_responses)
            )
            # A gold answer names a response by its index in the line; store its id instead.
            if r.gold and r.gold["outcome"] == "preferred":
                item.gold = {"outcome": "preferred", "preferred_response_id": item_responses[r.gold["preferred"]].pk}
                item.save(update_fields=["gold"])
        ItemResponse.objects.bulk_create(links)
    return ImportResult(
        items=len(records), prompts=len(records), responses=n_responses, formats=dict(report.formats),
        skipped=report.skipped, skipped_count=report.skipped_count,
        warnings=report.warnings, warning_count=report.warning_count,
    )
