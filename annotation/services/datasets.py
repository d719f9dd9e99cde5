"""Datasets: immutable, versioned snapshots of a campaign's aggregated comparisons.

`dataset_create` writes the row (status `building`) and queues the build after commit;
`dataset_build` (the Celery task's body) reads the snapshot's judgments, aggregates them with
the pure `annotation.core.aggregation` functions, and writes the rows, hash, counts, statistics and
leaderboard once. Nothing updates a dataset after that and nothing deletes one.

The build reads and computes outside any transaction and writes in one short one: on SQLite
every transaction holds the database's write lock, and judging must not wait on a bootstrap.

The snapshot math itself (`snapshot_*`) is pure and lives in `annotation.core.snapshot`; the
judgments a snapshot reads are selected by `annotation.selectors` (`snapshot_judgments`,
`dataset_judgments`), which the exports read too.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from annotation.core.snapshot import (
    PARAMS,
    ComparisonRow,
    JudgmentRow,
    SnapshotError,
    held_back_counts,
    param_default,
    snapshot_comparisons,
    snapshot_decide,
    snapshot_flagged,
    snapshot_leaderboard,
    snapshot_stats,
)
from annotation.errors import ApplicationError, ForbiddenError, field_error
from annotation.models import (
    Campaign,
    Dataset,
    DatasetComparison,
    Item,
    ItemResponse,
    Judgment,
    Response,
    Role,
)
from annotation.pseudonyms import annotator_pseudonym
from annotation.selectors import excluded_annotator_ids, membership_role, snapshot_judgments
from annotation.services.audit import audit_record

logger = logging.getLogger(__name__)

_WRITE_BATCH = 500


class DatasetBuildError(ApplicationError):
    """A reason the snapshot cannot be built, shown to the manager as it is."""


# --- parameters -------------------------------------------------------------------------------


def dataset_params_clean(
    *, method: str, params: Mapping[str, Any] | None, overlap: int | None = None
) -> dict[str, Any]:
    """Return the method's full parameters (defaults filled in) or raise naming the bad one.

    `overlap` is the campaign's: `min_judgments` defaults to 2, or 1 on a campaign that asks one
    judgment per item (`default_min_judgments`).
    """
    if method not in Dataset.Method.values:
        raise field_error("method", f"must be one of {', '.join(Dataset.Method.values)}")
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise field_error("params", "must be an object of parameter names and values")
    allowed = {name for name, p in PARAMS.items() if method in p.methods}
    for name in params:
        if name not in allowed:
            raise field_error(f"params.{name}", f"is not a parameter of {method}; use: {', '.join(sorted(allowed))}")
    cleaned = {}
    for name in sorted(allowed):
        spec = PARAMS[name]
        value = params.get(name, param_default(name, overlap))
        if not spec.check(value):
            raise field_error(f"params.{name}", f"must be {spec.expect}, not {value!r}")
        cleaned[name] = float(value) if isinstance(spec.default, float) else value
    return cleaned


# --- services ---------------------------------------------------------------------------------


@transaction.atomic
def dataset_create(
    *, campaign: Campaign, method: str, params: Mapping[str, Any] | None = None, created_by: AbstractBaseUser
) -> Dataset:
    """Create the campaign's next dataset version (status building) and queue its build after commit."""
    cleaned = dataset_params_clean(method=method, params=params, overlap=campaign.overlap)
    if membership_role(user=created_by, campaign=campaign) != Role.MANAGER:
        raise ForbiddenError("Only the campaign's managers create datasets.")
    # The campaign row serializes version numbering (the unique constraint backs it up).
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    last = Dataset.objects.filter(campaign=campaign).aggregate(v=Max("version"))["v"] or 0
    # Excluded members are named (pseudonymously) in the parameters, so the snapshot is the same
    # whatever happens to their memberships after it is taken, and its card says who was left out.
    cleaned["excluded_annotators"] = sorted(annotator_pseudonym(u) for u in excluded_annotator_ids(campaign=campaign))
    dataset = Dataset.objects.create(
        campaign=campaign,
        version=last + 1,
        method=method,
        params=cleaned,
        campaign_version=campaign.version,
        status=Dataset.Status.BUILDING,
        created_by=created_by,
    )
    audit_record(
        actor=created_by, campaign=campaign, action="dataset.create", target=f"dataset:{dataset.pk}",
        after={"version": dataset.version, "method": method, "excluded_annotators": len(cleaned["excluded_annotators"])},
    )
    from annotation.tasks import build_dataset  # tasks import this module

    transaction.on_commit(lambda: build_dataset.delay(dataset.pk))
    return dataset


def dataset_build(*, dataset_id: int) -> Dataset:
    """Build a `building` dataset once: rows, hash, counts, statistics, leaderboard; then `ready`.

    On any error the dataset becomes `failed` with the message and no rows. A dataset that is
    not `building` (a task delivered twice) is returned as it is.
    """
    dataset = Dataset.objects.select_related("campaign").get(pk=dataset_id)
    if dataset.status != Dataset.Status.BUILDING:
        return dataset
    try:
        try:
            snapshot = _compute(dataset)
        except SnapshotError as exc:
            raise DatasetBuildError(str(exc)) from exc
        with transaction.atomic():
            locked = Dataset.objects.select_for_update().get(pk=dataset_id)
            if locked.status != Dataset.Status.BUILDING:
                return locked
            _write(locked, snapshot)
    except Exception as exc:  # recorded on the dataset for the manager to read, and logged
        if isinstance(exc, ApplicationError):
            message = exc.message
        else:
            logger.exception("dataset %s failed to build", dataset_id)
            message = f"The build failed unexpectedly ({type(exc).__name__}: {exc})."
        Dataset.objects.filter(pk=dataset_id, status=Dataset.Status.BUILDING).update(
            status=Dataset.Status.FAILED, error=message, finished_at=timezone.now()
        )
    return Dataset.objects.get(pk=dataset_id)


def dataset_rows_hash(rows: Iterable[Sequence[Any]]) -> str:
    """Return the sha256 of rows in canonical form (one JSON array per line, keys sorted)."""
    h = hashlib.sha256()
    for row in rows:
        h.update(_canonical(row))
    return h.hexdigest()


HASH_FIELDS = (
    "item_id", "prompt", "chosen_response_id", "chosen_text", "chosen_model", "rejected_response_id",
    "rejected_text", "rejected_model", "outcome", "margin", "confidence", "n_judgments",
)


def dataset_verify_hash(dataset: Dataset) -> bool:
    """Return whether the stored rows still hash to the dataset's content hash."""
    rows = DatasetComparison.objects.filter(dataset=dataset).order_by("position").values_list(*HASH_FIELDS)
    return dataset_rows_hash(rows.iterator(chunk_size=2000)) == dataset.content_hash


def _canonical(row: Sequence[Any]) -> bytes:
    return (json.dumps(list(row), sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


# --- reading (Django) -------------------------------------------------------------------------


@dataclass
class _Snapshot:
    last_judgment_id: int | None
    comparisons: list[ComparisonRow]
    judgment_count: int
    annotator_count: int
    stats: dict[str, Any]
    leaderboard: dict[str, Any]


def _compute(dataset: Dataset) -> _Snapshot:
    campaign = dataset.campaign
    last_id = Judgment.objects.filter(campaign=campaign).aggregate(m=Max("pk"))["m"]
    excluded = set((dataset.params or {}).get("excluded_annotators") or [])
    pseudonym: dict[int, str] = {}
    rows, dropped = [], 0
    for j in snapshot_judgments(campaign_id=campaign.pk, last_judgment_id=last_id).values(
        "pk", "item_id", "annotator_id", "outcome", "preferred_response_id", "strength", "answer",
        "display_order", "item__is_gold", "item__gold",
    ):
        if excluded:
            if j["annotator_id"] not in pseudonym:
                pseudonym[j["annotator_id"]] = annotator_pseudonym(j["annotator_id"])
            if pseudonym[j["annotator_id"]] in excluded:
                dropped += 1
                continue
        rows.append(JudgmentRow(
            judgment_id=j["pk"], item_id=j["item_id"], annotator_id=j["annotator_id"], outcome=j["outcome"],
            preferred_response_id=j["preferred_response_id"], strength=j["strength"], answer=j["answer"] or {},
            display_order=j["display_order"] or [], is_gold=j["item__is_gold"], gold=j["item__gold"],
        ))
    item_responses: dict[int, list[int]] = defaultdict(list)
    for item_id, response_id in (
        ItemResponse.objects.filter(item__campaign=campaign).order_by("item_id", "position").values_list(
            "item_id", "response_id"
        )
    ):
        item_responses[item_id].append(response_id)
    models = dict(Response.objects.filter(prompt__campaign=campaign).values_list("pk", "model_name"))
    params = {**param_defaults_for_old(dataset.params), **dataset.params}
    decided = snapshot_decide(rows, kind=campaign.kind, item_responses=item_responses, models=models,
                              method=dataset.method, params=params)
    judged, regular, consensus = decided.judged, decided.regular, decided.result
    if not regular:
        left_out = f" ({dropped} judgment(s) of excluded annotators were left out)" if dropped else ""
        raise DatasetBuildError(
            "There is nothing to aggregate yet: the campaign has no current judgments on regular items "
            f"that compare two responses{left_out}. Collect judgments, then create the dataset again."
        )
    comparisons = snapshot_comparisons(
        consensus, regular, include_ties=params["include_ties"], min_confidence=params["min_confidence"],
        min_judgments=params["min_judgments"],
    )
    if not comparisons:
        raise DatasetBuildError(
            "Every comparison was a tie and include_ties is off: the dataset would be empty. "
            "Turn include_ties on or collect more judgments."
        )
    pseudonyms = {a: annotator_pseudonym(a) for a in {p.annotator_id for p in judged.pairs}}
    used = {j for j, is_gold in judged.used if not is_gold}
    return _Snapshot(
        last_judgment_id=last_id,
        comparisons=comparisons,
        judgment_count=len(used),
        annotator_count=len({p.annotator_id for p in regular}),
        stats={
            **snapshot_stats(
                consensus=consensus, pairs=judged.pairs, comparisons=comparisons, pseudonyms=pseudonyms,
                gold=judged.gold_answers,
            ),
            "excluded": {"annotators": sorted(excluded), "judgments": dropped},
            "held_back": held_back_counts(decided.decisions),
            "flagged": _flagged_stats(rows, comparisons, params),
        },
        leaderboard=snapshot_leaderboard(regular, params=dataset.params),
    )


def param_defaults_for_old(params: Mapping[str, Any]) -> dict[str, Any]:
    """Return the thresholds a dataset made before they existed was built with: none (every winner
    decided, flagged items kept), so rebuilding an old dataset's parameters changes nothing."""
    return {"min_confidence": 0.0, "min_judgments": 1, "flag_min_annotators": 1,
            "keep_flagged": "flag_min_annotators" not in params}


def _flagged_stats(rows: Sequence[JudgmentRow], comparisons: Sequence[ComparisonRow],
                   params: Mapping[str, Any]) -> dict[str, Any]:
    """The flagged items (item id, flags with their annotator counts) and what they hold back."""
    flagged = snapshot_flagged(rows, min_annotators=params["flag_min_annotators"])
    ids = {f.item_id for f in flagged}
    return {
        "min_annotators": params["flag_min_annotators"],
        "kept": params["keep_flagged"],
        "items": [{"item_id": f.item_id, "flags": f.flags, "annotators": f.annotators} for f in flagged],
        "decided_pairs": sum(1 for c in comparisons if c.item_id in ids and c.outcome == "chosen"),
    }


def _write(dataset: Dataset, snap: _Snapshot) -> None:
    digest = hashlib.sha256()
    items: set[int] = set()
    position = 0
    for start in range(0, len(snap.comparisons), _WRITE_BATCH):
        batch = snap.comparisons[start : start + _WRITE_BATCH]
        response_ids = {c.chosen_id for c in batch} | {c.rejected_id for c in batch}
        texts = dict(Response.objects.filter(pk__in=response_ids).values_list("pk", "content"))
        prompts = dict(Item.objects.filter(pk__in={c.item_id for c in batch}).values_list("pk", "prompt__messages"))
        objs = []
        for c in batch:
            obj = DatasetComparison(
                dataset=dataset, position=position, item_id=c.item_id, prompt=prompts[c.item_id],
                chosen_response_id=c.chosen_id, chosen_text=texts[c.chosen_id], chosen_model=c.chosen_model,
                rejected_response_id=c.rejected_id, rejected_text=texts[c.rejected_id],
                rejected_model=c.rejected_model, outcome=c.outcome, margin=c.margin, confidence=c.confidence,
                n_judgments=c.n_judgments,
            )
            digest.update(_canonical([getattr(obj, f) for f in HASH_FIELDS]))
            objs.append(obj)
            items.add(c.item_id)
            position += 1
        DatasetComparison.objects.bulk_create(objs)
    dataset.last_judgment_id = snap.last_judgment_id
    dataset.content_hash = digest.hexdigest()
    dataset.item_count = len(items)
    dataset.comparison_count = position
    dataset.judgment_count = snap.judgment_count
    dataset.annotator_count = snap.annotator_count
    dataset.stats = snap.stats
    dataset.leaderboard = snap.leaderboard
    dataset.status = Dataset.Status.READY
    dataset.error = ""
    dataset.finished_at = timezone.now()
    dataset.save()
