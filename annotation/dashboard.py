"""The manager's live dashboard of a campaign, as one JSON-ready payload.

`campaign_dashboard` is a selector: the caller has authorized the campaign. It has two parts.

- The live part is read on every call and stays cheap at any campaign size: the counters the
  services keep, the memberships, and judgments per minute counted over the
  (campaign, created_at) index.
- The quality part reads every current judgment and aggregates it (agreement, position bias,
  Bradley–Terry leaderboard, time per item). It is cached per campaign and judgment state (the
  newest judgment id, the judgment count and the excluded members), so that repeated pushes of
  an unchanged campaign, and several managers watching one campaign, cost one computation.
  A computation slow enough to matter (a large campaign) is repeated at most every few times
  its duration; meanwhile the last figures are served, marked stale (`quality_as_of`).

Figures computed across annotators (agreement, position bias, leaderboard, the overall median
time) leave excluded members out; progress and the per-annotator rows count everyone, with
excluded members marked.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.db.models import CharField, Count, Max
from django.db.models.functions import Substr, TruncMinute
from django.utils import timezone

from annotation.core import aggregation as agg
from annotation.core.snapshot import (
    Decision,
    JudgmentRow,
    held_back_counts,
    snapshot_decide,
    snapshot_leaderboard,
)
from annotation.models import Campaign, Item, ItemResponse, Judgment, Membership, Role
from annotation.selectors import campaign_consensus_settings, campaign_live_counts

# The live view bootstraps fewer rounds than a dataset build (1000): the intervals are a
# little rougher and a fit costs a fraction of the time. A dataset gives the final figures.
LIVE_BOOTSTRAP_ROUNDS = 200
CONFIDENCE = 0.95
THROUGHPUT_BUCKET = timedelta(minutes=1)
THROUGHPUT_WINDOW = timedelta(hours=3)
# The throughput line starts at the first judgment of the window, but shows at least this span.
THROUGHPUT_MIN_SPAN = timedelta(minutes=30)
CACHE_SECONDS = 6 * 3600
# Quality figures that took at least SLOW_SECONDS to compute are recomputed at most every
# STALE_FACTOR times that long (shown marked stale meanwhile): a busy large campaign then uses at
# most about a quarter of a thread for them, while small campaigns are always current.
SLOW_SECONDS = 0.25
STALE_FACTOR = 4.0
_DIGITS = 4

_compute_locks: dict[int, threading.Lock] = {}
_locks_guard = threading.Lock()


def campaign_dashboard(*, campaign: Campaign, now: datetime | None = None) -> dict[str, Any]:
    """Return the campaign's dashboard: progress, throughput, annotators, agreement, bias, leaderboard."""
    now = now or timezone.now()
    counts = campaign_live_counts(campaign_id=campaign.pk)
    members = list(
        Membership.objects.filter(campaign=campaign).select_related("user").order_by("user__username", "pk")
    )
    excluded = sorted(m.user_id for m in members if m.excluded)
    state = Judgment.objects.filter(campaign=campaign).aggregate(n=Count("pk"), last=Max("pk"))
    quality, quality_as_of = _quality_cached(
        campaign, judgment_count=state["n"] or 0, last_judgment_id=state["last"], excluded=excluded
    )
    return {
        "campaign": {
            "id": campaign.pk,
            "name": campaign.name,
            "kind": campaign.kind,
            "status": campaign.status,
            "overlap": campaign.overlap,
        },
        "generated_at": now.isoformat(),
        "judgment_count": state["n"] or 0,
        "progress": {
            "items": counts["items"],
            "items_complete": counts["complete"],
            "judgments": counts["done"],
            "wanted": counts["wanted"],
            "leased": counts["leased"],
            "per_minute": counts["per_minute"],
            "share": _round(counts["done"] / counts["wanted"]) if counts["wanted"] else None,
        },
        "throughput": campaign_throughput(campaign_id=campaign.pk, now=now),
        "annotators": _annotator_rows(members, quality["annotators"]),
        "excluded": [m.user.get_username() for m in members if m.excluded],
        "time_per_item": quality["time_per_item"],
        "agreement": quality["agreement"],
        "consensus": quality["consensus"],
        "position_bias": quality["position_bias"],
        "leaderboard": quality["leaderboard"],
        "quality_as_of": quality_as_of,
    }


def campaign_throughput(*, campaign_id: int, now: datetime) -> dict[str, Any]:
    """Return judgments per minute over the last hours (gold checks and corrections included).

    One grouped count over the (campaign, created_at) index; minutes without judgments are
    filled with zeros. The line starts at the window's first judgment, showing at least
    `THROUGHPUT_MIN_SPAN`, and ends at the current minute.
    """
    end = now.replace(second=0, microsecond=0)
    since = end - THROUGHPUT_WINDOW + THROUGHPUT_BUCKET
    per_minute = _judgments_per_minute(campaign_id, since, now)
    first = min(per_minute, default=end)
    start = max(since, min(first, end - THROUGHPUT_MIN_SPAN + THROUGHPUT_BUCKET))
    buckets = []
    t = start
    while t <= end:
        buckets.append({"t": t.isoformat(), "count": per_minute.get(t, 0)})
        t += THROUGHPUT_BUCKET
    counts = [b["count"] for b in buckets]
    return {
        "bucket_seconds": int(THROUGHPUT_BUCKET.total_seconds()),
        "window_minutes": int(THROUGHPUT_WINDOW.total_seconds() // 60),
        "buckets": buckets,
        "total": sum(counts),
        "peak": max(counts, default=0),
    }


def _judgments_per_minute(campaign_id: int, since: datetime, until: datetime) -> dict[datetime, int]:
    """Return {minute (UTC): judgments} between `since` and `until`, grouped by the database."""
    window = Judgment.objects.filter(campaign_id=campaign_id, created_at__gte=since, created_at__lte=until)
    if connection.vendor != "sqlite":
        rows = window.annotate(minute=TruncMinute("created_at", tzinfo=UTC)).values("minute").annotate(n=Count("pk"))
        return {r["minute"]: r["n"] for r in rows}
    # SQLite stores datetimes as "YYYY-MM-DD HH:MM:SS.ffffff" text in UTC: the first 16 characters
    # are the minute. (TruncMinute there calls a Python function per row: 30x slower.)
    rows = window.annotate(minute=Substr("created_at", 1, 16, output_field=CharField())).values("minute").annotate(
        n=Count("pk")
    )
    return {datetime.strptime(r["minute"], "%Y-%m-%d %H:%M").replace(tzinfo=UTC): r["n"] for r in rows}


def _annotator_rows(members: list[Membership], quality: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per annotator (and per other member who judged), in username order."""
    rows = []
    seen = set()
    for m in members:
        if m.role != Role.ANNOTATOR and m.judged == 0:
            continue
        seen.add(m.user_id)
        q = quality.get(m.user_id, {})
        rows.append({
            "user_id": m.user_id,
            "username": m.user.get_username(),
            "role": m.role,
            "judged": m.judged,
            "cap": m.cap,
            "paused": not m.is_active,
            "excluded": m.excluded,
            "median_seconds": q.get("median_seconds"),
            "timed": q.get("timed", 0),
            "gold": {
                "correct": m.gold_correct,
                "n": m.gold_judged,
                "accuracy": _round(m.gold_correct / m.gold_judged) if m.gold_judged else None,
            },
        })
    # Judgments by someone without a membership (a superuser judging): shown, never lost.
    for user_id, q in sorted(quality.items(), key=lambda kv: kv[1]["username"]):
        if user_id in seen:
            continue
        rows.append({
            "user_id": user_id, "username": q["username"], "role": None, "judged": q["judgments"], "cap": None,
            "paused": False, "excluded": False, "median_seconds": q["median_seconds"], "timed": q["timed"],
            "gold": {"correct": 0, "n": 0, "accuracy": None},
        })
    return rows


# --- the quality part (cached) --------------------------------------------------------------------


@dataclass(frozen=True)
class _Computed:
    """The last quality figures computed for a campaign (and set of excluded members)."""

    quality: dict[str, Any]
    state: tuple[int, int | None]  # (judgment count, newest judgment id) they were computed at
    computed_at: float  # time.time()
    seconds: float  # how long the computation took


def _quality_cached(
    campaign: Campaign, *, judgment_count: int, last_judgment_id: int | None, excluded: list[int]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (quality figures, how current they are) for the campaign's judgment state.

    Computed once per state. A slow computation (a large campaign) is not repeated for every
    burst: until `STALE_FACTOR` times its duration has passed, or while another thread is
    computing, the previous figures are returned marked stale with the seconds until a refresh.
    """
    # created_at keeps a reused campaign id (a database rebuilt under a running process) apart.
    key = "arbiter-dashboard:" + ":".join(
        str(p) for p in (campaign.pk, campaign.created_at.timestamp(), campaign.version, ",".join(map(str, excluded)))
    )
    state = (judgment_count, last_judgment_id)
    latest: _Computed | None = cache.get(key)
    if latest is not None and latest.state == state:
        return latest.quality, _as_of(latest, judgment_count)
    if latest is not None and latest.seconds >= SLOW_SECONDS:
        wait = latest.computed_at + STALE_FACTOR * latest.seconds - time.time()
        if wait > 0:
            return latest.quality, _as_of(latest, judgment_count, refresh_in=wait)
    with _locks_guard:
        lock = _compute_locks.setdefault(campaign.pk, threading.Lock())
    # With figures to show, do not queue behind a computation already running: show those.
    if not lock.acquire(blocking=latest is None):
        return latest.quality, _as_of(latest, judgment_count, refresh_in=max(latest.seconds, 0.5))
    try:
        latest = cache.get(key)
        if latest is None or latest.state != state:
            started = time.perf_counter()
            quality = campaign_quality(campaign=campaign, excluded=set(excluded))
            latest = _Computed(quality, state, time.time(), time.perf_counter() - started)
            cache.set(key, latest, CACHE_SECONDS)
    finally:
        lock.release()
    return latest.quality, _as_of(latest, judgment_count)


def _as_of(computed: _Computed, judgment_count: int, *, refresh_in: float | None = None) -> dict[str, Any]:
    stale = refresh_in is not None
    return {
        "judgment_count": computed.state[0],
        "stale": stale,
        "refresh_in": round(refresh_in, 3) if stale else None,
        "compute_seconds": round(computed.seconds, 3),
    }


def campaign_quality(*, campaign: Campaign, excluded: set[int]) -> dict[str, Any]:
    """Return time per item, agreement, position bias and the leaderboard from current judgments.

    Uncached; `campaign_dashboard` caches it. Judgments of `excluded` annotators are left out of
    everything but their own row. The judgments are read in one query without joins, as tuples,
    and only the first shown response of each display order (all that position bias needs).
    """
    superseded = set(
        Judgment.objects.filter(campaign=campaign, supersedes__isnull=False).values_list("supersedes_id", flat=True)
    )
    gold_answers = dict(Item.objects.filter(campaign=campaign, is_gold__in=[True]).values_list("pk", "gold"))
    fields = ["pk", "item_id", "annotator_id", "outcome", "preferred_response_id", "strength",
              "display_order__0", "time_taken_ms"]
    if campaign.kind != Campaign.Kind.PAIRWISE:
        fields.append("answer")
    rows: list[JudgmentRow] = []
    seconds: dict[int, list[float]] = defaultdict(list)
    counts: dict[int, int] = defaultdict(int)
    included_seconds: list[float] = []
    for j in Judgment.objects.filter(campaign=campaign).values_list(*fields).iterator(chunk_size=5000):
        pk, item_id, annotator, outcome, preferred, strength, first_shown, ms = j[:8]
        if pk in superseded:
            continue
        counts[annotator] += 1
        if ms is not None:
            seconds[annotator].append(ms / 1000.0)
            if annotator not in excluded:
                included_seconds.append(ms / 1000.0)
        if annotator in excluded:
            continue
        rows.append(JudgmentRow(
            judgment_id=pk, item_id=item_id, annotator_id=annotator, outcome=outcome,
            preferred_response_id=preferred, strength=strength, answer=(j[8] or {}) if len(j) > 8 else {},
            display_order=[first_shown] if first_shown is not None else [],
            is_gold=item_id in gold_answers, gold=gold_answers.get(item_id),
        ))
    usernames = dict(
        get_user_model().objects.filter(pk__in=list(counts)).values_list("pk", get_user_model().USERNAME_FIELD)
    )
    per_annotator = {
        annotator: {
            "username": usernames.get(annotator, str(annotator)),
            "judgments": n,
            "median_seconds": _round(statistics.median(seconds[annotator])) if seconds.get(annotator) else None,
            "timed": len(seconds.get(annotator, ())),
        }
        for annotator, n in counts.items()
    }

    item_responses: dict[int, list[int]] = defaultdict(list)
    models: dict[int, str] = {}
    judged_items = Judgment.objects.filter(campaign=campaign).values("item_id")
    for item_id, response_id, model in (
        ItemResponse.objects.filter(item__in=judged_items)
        .order_by("item_id", "position")
        .values_list("item_id", "response_id", "response__model_name")
    ):
        item_responses[item_id].append(response_id)
        models[response_id] = model
    method, params = campaign_consensus_settings(campaign=campaign)
    consensus = snapshot_decide(rows, kind=campaign.kind, item_responses=item_responses, models=models,
                                method=method, params=params)
    regular = consensus.regular
    return {
        "consensus": _consensus(consensus.decisions, method, params),
        "annotators": per_annotator,
        "time_per_item": {
            "median_seconds": _round(statistics.median(included_seconds)) if included_seconds else None,
            "n": len(included_seconds),
        },
        "agreement": _agreement(regular),
        "position_bias": _position_bias(regular),
        "leaderboard": _leaderboard(regular),
    }


def _consensus(decisions: list[Decision], method: str, params: dict[str, Any]) -> dict[str, Any]:
    """What a dataset built now with the default settings would export: decided pairs, ties and
    undecided pairs by reason (the same `snapshot_decide` as the dataset and the items page)."""
    held = held_back_counts(decisions)
    return {
        "method": method,
        "min_confidence": params["min_confidence"],
        "min_judgments": params["min_judgments"],
        "pairs": len(decisions),
        "decided": sum(1 for d in decisions if d.outcome == "chosen"),
        "ties": held["tie"],
        "undecided": {"too_few_judgments": held["too_few_judgments"], "below_confidence": held["below_confidence"]},
    }


def _agreement(regular: list[agg.PairwiseJudgment]) -> dict[str, Any]:
    annotators_per_item: dict[Any, set] = defaultdict(set)
    for p in regular:
        annotators_per_item[p.item_id].add(p.annotator_id)
    shared = {k for k, s in annotators_per_item.items() if len(s) >= 2}
    value = None
    if shared:
        value = _round(agg.krippendorff_alpha(regular, level="nominal"))
    return {
        "method": "krippendorff_alpha_nominal",
        "label": "Krippendorff's α (nominal: first better / second better / tie)",
        "value": value,
        "items": len(shared),
        "judgments": sum(1 for p in regular if p.item_id in shared),
        "annotators": len({p.annotator_id for p in regular}),
    }


def _position_bias(regular: list[agg.PairwiseJudgment]) -> dict[str, Any]:
    overall, _ = agg.position_bias(regular, confidence=CONFIDENCE)
    return {
        "rate": _round(overall.rate),
        "ci_low": _round(overall.ci_low),
        "ci_high": _round(overall.ci_high),
        "confidence": CONFIDENCE,
        "decisive": overall.decisive,
        "first_wins": overall.first_wins,
        "ties": overall.ties,
        "p_value": _round(overall.p_value) if overall.decisive else None,
    }


def _leaderboard(regular: list[agg.PairwiseJudgment]) -> dict[str, Any]:
    board = snapshot_leaderboard(regular, params={"bootstrap_rounds": LIVE_BOOTSTRAP_ROUNDS, "seed": 0})
    return {
        "rows": board["rows"],
        "bootstrap_rounds": board["bootstrap_rounds"],
        "confidence": board["confidence"],
        "scale": board["scale"],
        "prior": board["prior"],
        "note": board["note"],
    }


def _round(x: float | None) -> float | None:
    """Return x rounded for display, or None when it is undefined (JSON has no NaN)."""
    return None if x is None or not math.isfinite(x) else round(float(x), _DIGITS)
