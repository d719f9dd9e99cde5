import random
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F

from annotation.errors import ApplicationError, ConflictError
from annotation.importing import FORMATS, ImportReport, ItemRecord, parse_jsonl
from annotation.models import GOLD_TARGET, Campaign, Item, ItemResponse, Prompt, Response

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


class ImportRejected(ApplicationError):
    """The file had bad lines; nothing was written. `extra["errors"]` lists them."""


def items_parse(*, campaign: Campaign, lines: Iterable[bytes | str], format: str = "auto") -> ImportReport:
    """Validate every line against the campaign's kind and the ids already stored."""
    if format not in FORMATS:
        raise ApplicationError(f"format: must be one of {', '.join(FORMATS)}", extra={"fields": {"format": [format]}})
    report = parse_jsonl(lines, format=format, responses_per_item=RESPONSES_PER_ITEM[Campaign.Kind(campaign.kind)])
    ids = [r.external_id for r in report.records if r.external_id]
    if ids:
        taken = set()
        for start in range(0, len(ids), 900):
            taken.update(
                Prompt.objects.filter(campaign=campaign, external_id__in=ids[start : start + 900]).values_list(
                    "external_id", flat=True
                )
            )
        for r in report.records:
            if r.external_id in taken:
                report.add_error(r.line, f"id {r.external_id!r} is already in this campaign")
    return report


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
def items_import(*, campaign: Campaign, lines: Iterable[bytes | str], format: str = "auto") -> ImportResult:
    """Import JSONL lines as items, all or nothing: any bad line and nothing is written."""
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if campaign.status == Campaign.Status.CLOSED:
        raise ConflictError("This campaign is closed; open a new campaign for more data.")
    report = items_parse(campaign=campaign, lines=lines, format=format)
    if not report.ok:
        raise report_error(report)
    result = _insert(campaign, report.records, dict(report.formats))
    regular = sum(1 for r in report.records if r.gold is None)
    Campaign.objects.filter(pk=campaign.pk).update(
        item_count=F("item_count") + regular, wanted_judgments=F("wanted_judgments") + regular * campaign.overlap
    )
    return result


def _insert(campaign: Campaign, records: list[ItemRecord], formats: dict[str, int]) -> ImportResult:
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
    return ImportResult(items=len(records), prompts=len(records), responses=n_responses, formats=formats)
