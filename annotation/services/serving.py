"""Lease items to annotators and take their judgments, exactly.

Invariants, held by the database: an item never has more judgments plus open leases than its
target (a CHECK constraint), and one annotator has at most one assignment per item (a UNIQUE
constraint). On PostgreSQL the candidate item is locked with SKIP LOCKED so concurrent
annotators take different rows; on SQLite every transaction takes the write lock at BEGIN
(IMMEDIATE), which serializes the write path.
"""

import random
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from annotation import events
from annotation.errors import ConflictError, ForbiddenError, NotFoundError, field_error
from annotation.judging import AnswerError, PairwiseOptions, validate_answer, validate_criteria
from annotation.models import (
    COUNTER_SHARDS,
    Assignment,
    Campaign,
    CampaignCounter,
    Item,
    Judgment,
    Membership,
    Role,
)
from training.services import training_rules_on_judgments

_EXPIRE_BATCH = 200


def _skip_locked() -> bool:
    return connection.features.has_select_for_update_skip_locked


def leases_expire(*, campaign_id: int, now: datetime | None = None, limit: int = _EXPIRE_BATCH) -> int:
    """Return expired leases of the campaign to the pool; return how many were expired.

    Never waits on a row another transaction holds: on PostgreSQL both the leases and their
    items are taken with SKIP LOCKED (items in id order), so expiry cannot deadlock with a
    submit or another expirer; a lease whose item is busy is expired on a later pass.
    """
    now = now or timezone.now()
    leases = Assignment.objects.filter(
        campaign_id=campaign_id, status=Assignment.Status.LEASED, expires_at__lte=now
    ).order_by("expires_at")
    skip_locked = _skip_locked()
    if skip_locked:
        leases = leases.select_for_update(skip_locked=True)
    expired = 0
    with transaction.atomic():
        rows = list(leases.values_list("pk", "item_id")[:limit])
        if not rows:
            return 0
        items = Item.objects.filter(pk__in=sorted({item_id for _, item_id in rows})).order_by("pk")
        if skip_locked:
            items = items.select_for_update(skip_locked=True)
        free = set(items.values_list("pk", flat=True))
        for assignment_id, item_id in rows:
            if item_id not in free:
                continue
            # The conditional update makes a second expirer of the same lease a no-op.
            if Assignment.objects.filter(pk=assignment_id, status=Assignment.Status.LEASED).update(
                status=Assignment.Status.EXPIRED
            ):
                Item.objects.filter(pk=item_id).update(lease_count=F("lease_count") - 1)
                expired += 1
    return expired


def _judge_membership(campaign_id: int, annotator: AbstractBaseUser, *, lock: bool = False) -> Membership | None:
    """Return the annotator's membership (with its campaign) if they may judge there now, else raise.

    With `lock`, the membership row is locked: one `next` per annotator at a time. Superusers
    may judge without a membership (None is returned).
    """
    qs = Membership.objects.select_related("campaign").filter(campaign_id=campaign_id, user=annotator)
    membership = (qs.select_for_update(of=("self",)) if lock else qs).first()
    if membership is None and not annotator.is_superuser:
        if lock:  # asking for work: a non-member learns nothing about the campaign
            raise NotFoundError("Campaign not found.", extra={"campaign_id": campaign_id})
        raise ForbiddenError("You are not an annotator in this campaign.")
    if membership is not None:
        if membership.role not in (Role.ANNOTATOR, Role.MANAGER):
            raise ForbiddenError("Only annotators (and managers) judge in a campaign.")
        if not membership.is_active:
            raise ForbiddenError("Your work in this campaign is paused by its manager.")
    return membership


@transaction.atomic
def assignment_lease_next(*, campaign_id: int, annotator: AbstractBaseUser) -> Assignment | None:
    """Return the annotator's open lease, or lease them the next item; None when none is left.

    Order: items closest to completion first, then higher priority, then a fixed random key.
    """
    membership = _judge_membership(campaign_id, annotator, lock=True)
    campaign = membership.campaign if membership else Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None:
        raise NotFoundError("Campaign not found.", extra={"campaign_id": campaign_id})
    if campaign.status != Campaign.Status.ACTIVE:
        raise ConflictError(f"This campaign is {campaign.status}; nothing is being served.")
    now = timezone.now()

    open_lease = (
        Assignment.objects.select_related("item__prompt")
        .filter(campaign=campaign, annotator=annotator, status=Assignment.Status.LEASED, expires_at__gt=now)
        .order_by("leased_at")
        .first()
    )
    if open_lease is not None:
        return open_lease

    if membership is not None and membership.cap is not None and membership.judged >= membership.cap:
        return None

    # Gold checks are drawn at the campaign's rate while regular work remains; they look
    # exactly like any other item to the annotator.
    want_gold = campaign.gold_rate > 0 and random.random() < campaign.gold_rate
    item = _next_open_item(campaign, annotator, gold=want_gold)
    if item is None and want_gold:
        item = _next_open_item(campaign, annotator, gold=False)
    if item is None and leases_expire(campaign_id=campaign.pk, now=now):
        # Lapsed leases were holding the last places; the periodic sweep returns the rest.
        item = _next_open_item(campaign, annotator, gold=False)
    if item is None:
        return None

    response_ids = list(item.item_responses.order_by("position").values_list("response_id", flat=True))
    random.SystemRandom().shuffle(response_ids)
    updated = Item.objects.filter(pk=item.pk, judgment_count__lt=F("target") - F("lease_count")).update(
        lease_count=F("lease_count") + 1
    )
    if not updated:  # taken between the read and the write (only possible without row locks)
        return None
    events.campaign_changed(campaign_id=campaign.pk)
    return Assignment.objects.create(
        campaign=campaign,
        item=item,
        annotator=annotator,
        status=Assignment.Status.LEASED,
        display_order=response_ids,
        leased_at=now,
        expires_at=now + timedelta(seconds=campaign.lease_seconds),
    )


def _next_open_item(campaign: Campaign, annotator: AbstractBaseUser, *, gold: bool) -> Item | None:
    """Return (locked, on PostgreSQL) the best open item the annotator has not been given.

    Closest to completion first, then priority, then a fixed random key. The filter matches
    the partial index `item_serving_open`, which holds only items that still need judgments.
    """
    seen = Assignment.objects.filter(item=OuterRef("pk"), annotator=annotator)
    candidates = (
        Item.objects.select_related("prompt")
        # `is_gold__in` and not `is_gold=`: SQLite gets `NOT is_gold` for False, which its
        # planner cannot match to the index (and then sorts every item of the campaign).
        .filter(campaign=campaign, is_gold__in=[gold], judgment_count__lt=F("target") - F("lease_count"))
        .filter(~Exists(seen))
        .order_by("-judgment_count", "-priority", "random_key")
    )
    if _skip_locked():
        candidates = candidates.select_for_update(skip_locked=True, of=("self",))
    return candidates.first()


def _count_judgment(item_id: int, *, lease_held: bool) -> bool | None:
    """Count a judgment on the item; return whether it is now complete, None if it had no room.

    One UPDATE ... RETURNING (PostgreSQL, and SQLite since 3.35), so completion is known
    without reading the row again.
    """
    table = connection.ops.quote_name(Item._meta.db_table)
    if lease_held:
        sql = (f"UPDATE {table} SET judgment_count = judgment_count + 1, lease_count = lease_count - 1 "
               "WHERE id = %s RETURNING judgment_count >= target")
    else:
        sql = (f"UPDATE {table} SET judgment_count = judgment_count + 1 "
               "WHERE id = %s AND judgment_count < target - lease_count RETURNING judgment_count >= target")
    with connection.cursor() as cursor:
        cursor.execute(sql, [item_id])
        row = cursor.fetchone()
    return None if row is None else bool(row[0])


def _lock_own_assignment(assignment_id: int, annotator: AbstractBaseUser) -> Assignment:
    """Lock the annotator's own assignment (with campaign and item); anyone else's is "not found"."""
    assignment = (
        Assignment.objects.select_for_update(of=("self",))
        .select_related("campaign", "item")
        .filter(pk=assignment_id, annotator_id=annotator.pk)
        .first()
    )
    if assignment is None:
        raise NotFoundError("Assignment not found.", extra={"assignment_id": assignment_id})
    return assignment


def _gold_correct(gold: dict, outcome: str, preferred_response_id: int | None) -> bool:
    if gold.get("outcome") != outcome:
        return False
    return outcome != "preferred" or gold.get("preferred_response_id") == preferred_response_id


def _options(campaign: Campaign) -> PairwiseOptions:
    return PairwiseOptions(
        allow_ties=campaign.allow_ties,
        allow_both_bad=campaign.allow_both_bad,
        use_strength=campaign.use_strength,
        require_rationale=campaign.require_rationale,
        allow_editing=campaign.allow_editing,
    )


@transaction.atomic
def judgment_submit(*, assignment_id: int, annotator: AbstractBaseUser, answer: dict) -> tuple[Judgment, bool]:
    """Store the annotator's judgment for the assignment; return (judgment, created).

    Idempotent on the assignment: a repeated submit returns the judgment already stored. A
    submit after the lease expired is accepted while the item still needs a judgment, and
    refused with a conflict otherwise.
    """
    assignment = _lock_own_assignment(assignment_id, annotator)
    campaign = assignment.campaign
    if assignment.status == Assignment.Status.SUBMITTED:
        return Judgment.objects.get(assignment=assignment, supersedes__isnull=True), False
    if assignment.status == Assignment.Status.SKIPPED:
        raise ConflictError("You skipped this item; the judgment was not stored.")
    if campaign.status == Campaign.Status.CLOSED:
        raise ConflictError("This campaign is closed; the judgment was not stored.")

    try:
        cleaned = validate_answer(
            answer,
            kind=campaign.kind,
            options=_options(campaign),
            response_ids=assignment.display_order,
            criteria=validate_criteria(campaign.kind, campaign.criteria),
        )
    except AnswerError as exc:
        raise field_error(exc.field, exc.message) from exc

    # An open lease already holds a place under the target and turns into the judgment; an
    # expired one needs a free place.
    completed = _count_judgment(assignment.item_id, lease_held=assignment.status == Assignment.Status.LEASED)
    if completed is None:
        raise ConflictError(
                "Your lease on this item expired and it already has all the judgments it needs; "
                "this answer was not stored. Load the next item to go on.",
            extra={"assignment_id": assignment.pk},
        )

    item = assignment.item
    gold_correct = None
    counts = {"judged": F("judged") + 1}
    if item.is_gold:  # gold checks are scored (pairwise answers), never counted as progress
        if campaign.kind == Campaign.Kind.PAIRWISE:
            gold_correct = _gold_correct(item.gold, cleaned.outcome, cleaned.preferred_response_id)
            counts.update(gold_judged=F("gold_judged") + 1, gold_correct=F("gold_correct") + int(gold_correct))
    else:
        CampaignCounter.objects.filter(campaign=campaign, shard=random.randrange(COUNTER_SHARDS)).update(
            judgments=F("judgments") + 1, items_complete=F("items_complete") + int(completed)
        )
    # Counting the judgment against the membership is also the check that the member may
    # still judge; if not, the error says why and the transaction stores nothing.
    if not Membership.objects.filter(
        campaign=campaign, user=annotator, is_active=True, role__in=(Role.ANNOTATOR, Role.MANAGER)
    ).update(**counts) and not annotator.is_superuser:
        _judge_membership(campaign.pk, annotator)
        raise ForbiddenError("You may not judge in this campaign.")

    judgment = Judgment.objects.create(
        campaign=campaign,
        item_id=assignment.item_id,
        assignment=assignment,
        annotator=annotator,
        outcome=cleaned.outcome,
        preferred_response_id=cleaned.preferred_response_id,
        strength=cleaned.strength,
        answer=cleaned.answer,
        rationale=cleaned.rationale,
        edited_response=cleaned.edited_response,
        display_order=assignment.display_order,
        time_taken_ms=cleaned.time_taken_ms,
        campaign_version=campaign.version,
        gold_correct=gold_correct,
    )
    assignment.status = Assignment.Status.SUBMITTED
    assignment.completed_at = timezone.now()
    assignment.save(update_fields=["status", "completed_at"])
    training_rules_on_judgments(campaign_id=campaign.pk)  # one indexed EXISTS unless the campaign has rules
    events.campaign_changed(campaign_id=campaign.pk)
    return judgment, True


@transaction.atomic
def assignment_extend(*, assignment_id: int, annotator: AbstractBaseUser) -> Assignment:
    """Extend the lease while the judging page is open (the page's heartbeat).

    A lease that lapsed is taken again if the item still has room; otherwise a conflict says
    the item went to someone else.
    """
    assignment = _lock_own_assignment(assignment_id, annotator)
    _judge_membership(assignment.campaign_id, annotator)
    now = timezone.now()
    if assignment.status == Assignment.Status.EXPIRED:
        if not Item.objects.filter(
            pk=assignment.item_id, judgment_count__lt=F("target") - F("lease_count")
        ).update(lease_count=F("lease_count") + 1):
            raise ConflictError(
                "Your lease on this item expired and the item went to someone else. Load the next item.",
                extra={"assignment_id": assignment.pk},
            )
        assignment.status = Assignment.Status.LEASED
    elif assignment.status != Assignment.Status.LEASED:
        raise ConflictError(f"This item is already {assignment.status}; there is no lease to extend.")
    assignment.expires_at = now + timedelta(seconds=assignment.campaign.lease_seconds)
    assignment.leased_at = min(assignment.leased_at, now)
    assignment.save(update_fields=["status", "expires_at", "leased_at"])
    return assignment


SKIP_REASONS = ("cant_judge", "unsafe", "private_data", "broken", "other")


@transaction.atomic
def assignment_skip(*, assignment_id: int, annotator: AbstractBaseUser, reason: str = "") -> Assignment:
    """Give the item back without judging it; the annotator is not served it again."""
    assignment = _lock_own_assignment(assignment_id, annotator)
    _judge_membership(assignment.campaign_id, annotator)
    reason = (reason or "").strip()
    if reason and reason not in SKIP_REASONS:
        raise field_error("reason", f"must be one of {', '.join(SKIP_REASONS)}")
    if assignment.status == Assignment.Status.SKIPPED:
        return assignment
    if assignment.status == Assignment.Status.SUBMITTED:
        raise ConflictError("This item was already judged; it cannot be skipped.")
    if assignment.status == Assignment.Status.LEASED:
        Item.objects.filter(pk=assignment.item_id).update(lease_count=F("lease_count") - 1)
    assignment.status = Assignment.Status.SKIPPED
    assignment.skip_reason = reason
    assignment.completed_at = timezone.now()
    assignment.save(update_fields=["status", "skip_reason", "completed_at"])
    events.campaign_changed(campaign_id=assignment.campaign_id)
    return assignment
