"""Lease items to annotators and take their judgments, exactly.

Invariants, held by the database: an item never has more judgments plus open leases than its
target (a CHECK constraint), and one annotator has at most one assignment per item (a UNIQUE
constraint). On PostgreSQL the candidate item is locked with SKIP LOCKED so concurrent
annotators take different rows; on SQLite every transaction takes the write lock at BEGIN
(IMMEDIATE), which serializes the write path.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol

import psycopg
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, models, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework import exceptions as drf_exceptions

from annotation import events, hooks
from annotation.core.handles import answer_from_handles, handle_key, response_handles
from annotation.core.importing import MAX_RESPONSES
from annotation.core.judging import AnswerError, PairwiseOptions, validate_answer, validate_criteria
from annotation.errors import ConflictError, ForbiddenError, NotFoundError, field_error
from annotation.models import (
    COUNTER_SHARDS,
    Assignment,
    Campaign,
    Item,
    Judgment,
    Membership,
    Role,
)
from annotation.selectors import judging_progress
from annotation.services import statistics
from annotation.sql import EXPIRE_BATCH
from annotation.sql.statements import serving_statements, token_sql


def _skip_locked() -> bool:
    return connection.features.has_select_for_update_skip_locked


def leases_expire(*, campaign_id: int, now: datetime | None = None, limit: int = EXPIRE_BATCH) -> int:
    """Return expired leases of the campaign to the pool; return how many were expired.

    Never waits on a row another transaction holds: on PostgreSQL both the leases and their
    items are taken with SKIP LOCKED (items in id order), so expiry cannot deadlock with a
    submit or another expirer; a lease whose item is busy is expired on a later pass.
    On PostgreSQL `arbiter_next` does the same when `next` finds nothing open.
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


def _judge_membership(campaign_id: int, annotator: Judge, *, lock: bool = False) -> Membership | None:
    """Return the annotator's membership (with its campaign) if they may judge there now, else raise.

    With `lock`, the membership row is locked: one `next` per annotator at a time. Superusers
    may judge without a membership (None is returned).
    """
    qs = Membership.objects.select_related("campaign").filter(campaign_id=campaign_id, user_id=annotator.pk)
    membership = (qs.select_for_update(of=("self",)) if lock else qs).first()
    if membership is None and not annotator.is_superuser:
        if lock:  # asking for work: a non-member learns nothing about the campaign
            raise NotFoundError("Campaign not found.", extra={"campaign_id": campaign_id})
        raise ForbiddenError("You are not an annotator in this campaign.")
    if membership is not None:
        _check_member(membership.role, membership.is_active)
    return membership


def _check_member(role: str, is_active: bool) -> None:
    if role not in (Role.ANNOTATOR, Role.MANAGER):
        raise ForbiddenError("Only annotators (and managers) judge in a campaign.")
    if not is_active:
        raise ForbiddenError("Your work in this campaign is paused by its manager.")


@functools.lru_cache(maxsize=4)
def _handle_key(secret: str) -> bytes:
    return handle_key(secret)


def assignment_handles(assignment_id: int | str, response_ids: list[int]) -> dict[int, str]:
    """Return {response id: handle}: how the annotator of the assignment is shown its responses.

    Handles are keyed by the installation's SECRET_KEY (annotation.core.handles); what the
    annotator sends back is given in them, and `submit_for` maps them back to ids.
    """
    return response_handles(_handle_key(settings.SECRET_KEY), assignment_id, response_ids)


# ---------------------------------------------------------------------------------------------
# The hot path in SQL. `next` and `submit` are the requests every annotator makes for every item,
# so each runs a handful of hand-written statements (five and seven) instead of the ORM's dozen
# compiled queries. The statements are built once per database vendor from the models' tables.
# ---------------------------------------------------------------------------------------------


class Judge(Protocol):
    """Who asks: a user, or the hot path's token lookup (annotation.http.hotpath)."""

    pk: int
    is_superuser: bool


@dataclass(frozen=True)
class Shown:
    """What the annotator's page shows for an assignment: content only, in display order."""

    messages: list
    responses: list[tuple[int, str]]


@dataclass(frozen=True)
class NextResult:
    assignment: Assignment | None
    shown: Shown | None
    progress: dict[str, int]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def _sql() -> dict[str, str]:
    return serving_statements(connection.vendor)


def _db_datetime(value: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


@contextmanager
def hot_cursor() -> Iterator[Any]:
    """A cursor for the hot path's statements.

    On PostgreSQL, a server-side-binding cursor on Django's connection whose statements are
    prepared once per connection: planning the lease query costs more than running it. Errors
    are Django's (`wrap_database_errors`), and the statements run in the caller's transaction.
    Elsewhere, Django's cursor.
    """
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    connection.ensure_connection()
    with connection.wrap_database_errors, _PreparedCursor(connection.connection) as cursor:
        yield cursor


class _PreparedCursor(psycopg.Cursor):
    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        return super().execute(query, params, prepare=True, **kwargs)


def _insert(cursor: Any, model: type, values: dict[str, Any]) -> int:
    """INSERT one row from field names and values; return its id.

    Values of JSON and date-time fields go through the field's own preparation for the
    database; the rest (numbers, text, ids, None) are passed as they are.
    """
    sql, preps = _insert_sql(connection.vendor, model, tuple(values))
    params = [v if prep is None else prep(v, connection) for prep, v in zip(preps, values.values(), strict=True)]
    cursor.execute(sql, params)
    return cursor.fetchone()[0]


@functools.cache
def _insert_sql(vendor: str, model: type, names: tuple[str, ...]) -> tuple[str, tuple]:
    q = connection.ops.quote_name
    fields = [model._meta.get_field(n) for n in names]
    columns = ", ".join(q(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(names))
    preps = tuple(
        f.get_db_prep_save if isinstance(f, (models.JSONField, models.DateTimeField)) else None for f in fields
    )
    return f"INSERT INTO {q(model._meta.db_table)} ({columns}) VALUES ({marks}) RETURNING id", preps


def _shown(cursor, sql: str, params: list, order: list[int] | None = None) -> Shown:
    cursor.execute(sql, params)
    rows = cursor.fetchall()
    content = {rid: text for _, rid, text in rows}
    ids = order if order is not None else [rid for _, rid, _ in rows]
    return Shown(messages=_json(rows[0][0]) if rows else [], responses=[(rid, content[rid]) for rid in ids])


def _assignment(**values: Any) -> Assignment:
    """An Assignment for a row the hot path wrote or read (no query)."""
    assignment = Assignment(**values)
    assignment._state.adding = False
    assignment._state.db = connection.alias
    return assignment


def lease_next(*, campaign_id: int, annotator: Judge) -> NextResult:
    """Return the annotator's open lease, or lease them the next item, with what the page shows.

    Order: items closest to completion first, then higher priority, then a fixed random key.
    `assignment` is None when nothing is left for them. `progress` is their progress line.
    On PostgreSQL this is one call of `arbiter_next` (annotation/sql/next.sql), which answers
    every case; SQLite runs the same steps as a transaction of single statements.
    """
    if connection.vendor == "postgresql":
        return next_from_call(next_call(campaign_id, user_id=annotator.pk), campaign_id)
    return lease_next_steps(campaign_id=campaign_id, annotator=annotator)


def next_for(*, campaign_id: int, annotator: Judge | None = None, token: str | None = None) -> NextResult:
    """`next` for the API: for the user DRF authenticated, or for an API token (the hot path).

    A token is checked as DRF's TokenAuthentication checks it, with the same failures; on
    PostgreSQL inside the one call of `arbiter_next`.
    """
    if token is None:
        return lease_next(campaign_id=campaign_id, annotator=annotator)
    if connection.vendor != "postgresql":
        return lease_next_steps(campaign_id=campaign_id, annotator=token_user(token))
    row = next_call(campaign_id, token=token)
    _check_token(found=row.kind != "bad_token", active=row.kind != "inactive")
    return next_from_call(row, campaign_id)


class NextCall(NamedTuple):
    """The row `arbiter_next` answers (annotation/sql/next.sql, which lists the kinds)."""

    kind: str  # leased, reopened, empty, capped, refused, no_member, bad_token, inactive
    user: int | None
    superuser: bool | None
    role: str | None
    active: bool | None
    status: str | None
    cap: int | None
    judged: int | None
    wanted: int | None
    done: int | None
    assignment: int | None
    item: int | None
    order: Any
    leased: datetime | None
    expires: datetime | None
    messages: Any
    responses: Any


_MAX_SHOWN = MAX_RESPONSES + 1  # random keys passed to `arbiter_next`, one per response position

# Where each assignment's display order comes from: the operating system's randomness, so no one
# can predict it. A test that must be repeatable puts a seeded random.Random here.
DISPLAY_ORDER_RNG: random.Random = random.SystemRandom()


def next_call(campaign_id: int, *, user_id: int | None = None, token: str | None = None) -> NextCall:
    """Call `arbiter_next` (PostgreSQL) for a user id, or for an API token it checks itself."""
    now = timezone.now()
    draw = random.random()  # a gold check when below the campaign's gold rate
    keys = [DISPLAY_ORDER_RNG.random() for _ in range(_MAX_SHOWN)]  # the display order sorts the responses by these
    with hot_cursor() as cursor:
        cursor.execute(_sql()["next_call"], [campaign_id, token, user_id, now, draw, keys])
        return NextCall(*cursor.fetchone())


def next_from_call(row: NextCall, campaign_id: int) -> NextResult:
    """The `next` answer, or its error, from `arbiter_next`'s row for an authenticated caller."""
    if row.kind == "no_member":  # a non-member learns nothing about the campaign
        raise NotFoundError("Campaign not found.", extra={"campaign_id": campaign_id})
    progress = {"done": row.done or 0, "total": row.wanted or 0, "mine": row.judged or 0}
    if row.kind == "refused":
        if row.role is not None:  # a member (a superuser without one is refused for the status only)
            _check_member(row.role, bool(row.active))
        raise ConflictError(f"This campaign is {row.status}; nothing is being served.")
    if row.kind in ("capped", "empty"):
        return NextResult(None, None, progress)
    if row.kind == "leased":
        events.campaign_changed(campaign_id=campaign_id)
        statistics.growth.saw(row.assignment)
    elif row.kind != "reopened":
        raise ValueError(f"arbiter_next answered {row.kind!r}")
    order = _json(row.order)
    content = {rid: text for rid, text in _json(row.responses) or []}
    assignment = _assignment(
        id=row.assignment, campaign_id=campaign_id, item_id=row.item, annotator_id=row.user,
        status=Assignment.Status.LEASED, display_order=order, leased_at=row.leased, expires_at=row.expires,
    )
    return NextResult(assignment, Shown(_json(row.messages) or [], [(rid, content[rid]) for rid in order]), progress)


@transaction.atomic
def lease_next_steps(*, campaign_id: int, annotator: Judge) -> NextResult:
    """`lease_next` as a transaction of single statements (SQLite; PostgreSQL runs `arbiter_next`)."""
    sql = _sql()
    now = timezone.now()
    with hot_cursor() as cursor:
        cursor.execute(sql["member"], [campaign_id, annotator.pk])
        row = cursor.fetchone()
        if row is not None:
            role, is_active, cap, judged, status, gold_rate, lease_seconds, wanted, done = row
            _check_member(role, bool(is_active))
            progress = {"done": done or 0, "total": wanted or 0, "mine": judged}
        else:
            status, gold_rate, lease_seconds, progress = _without_membership(campaign_id, annotator)
            cap = judged = None
        if status != Campaign.Status.ACTIVE:
            raise ConflictError(f"This campaign is {status}; nothing is being served.")

        cursor.execute(sql["open_lease"], [campaign_id, annotator.pk, _db_datetime(now)])
        lease = cursor.fetchone()
        if lease is not None:
            return _reopened(cursor, sql, campaign_id, annotator, lease, progress)
        if cap is not None and judged >= cap:
            return NextResult(None, None, progress)

        # Gold checks are drawn at the campaign's rate while regular work remains; they look
        # exactly like any other item to the annotator.
        want_gold = gold_rate > 0 and random.random() < gold_rate
        taken = _lease_item(cursor, sql, campaign_id, annotator, gold=want_gold)
        if taken is None and want_gold:
            taken = _lease_item(cursor, sql, campaign_id, annotator, gold=False)
        if taken is None and leases_expire(campaign_id=campaign_id, now=now):
            # Lapsed leases were holding the last places; the periodic sweep returns the rest.
            taken = _lease_item(cursor, sql, campaign_id, annotator, gold=False)
        if taken is None:
            return NextResult(None, None, progress)
        item_id, shown = taken
        content = dict(shown.responses)
        order = list(content)
        DISPLAY_ORDER_RNG.shuffle(order)
        values = {
            "campaign": campaign_id,
            "item": item_id,
            "annotator": annotator.pk,
            "status": Assignment.Status.LEASED,
            "display_order": order,
            "leased_at": now,
            "expires_at": now + timedelta(seconds=lease_seconds),
            "skip_reason": "",
        }
        assignment_id = _insert(cursor, Assignment, values)
    events.campaign_changed(campaign_id=campaign_id)
    assignment = _assignment(
        id=assignment_id, campaign_id=campaign_id, item_id=item_id, annotator_id=annotator.pk,
        status=Assignment.Status.LEASED, display_order=order, leased_at=now, expires_at=values["expires_at"],
    )
    return NextResult(assignment, Shown(shown.messages, [(rid, content[rid]) for rid in order]), progress)


def _without_membership(campaign_id: int, annotator: Judge) -> tuple:
    """`next` for someone without a membership: a superuser may judge; anyone else gets a 404."""
    campaign = None
    if annotator.is_superuser:
        campaign = Campaign.objects.filter(pk=campaign_id).values("status", "gold_rate", "lease_seconds").first()
    if campaign is None:
        raise NotFoundError("Campaign not found.", extra={"campaign_id": campaign_id})
    progress = judging_progress(campaign_id=campaign_id, user=annotator)
    return campaign["status"], campaign["gold_rate"], campaign["lease_seconds"], progress


def _lease_item(cursor, sql: dict[str, str], campaign_id: int, annotator: Judge, *, gold: bool) -> tuple | None:
    """Take a place on the best open item the annotator has not been given: (item id, Shown)."""
    cursor.execute(sql["lease_item"], [campaign_id, gold, annotator.pk])
    row = cursor.fetchone()
    if row is None:
        return None
    if len(row) == 4:  # PostgreSQL returns what the page shows with the item
        return row[0], Shown(_json(row[2]), [(rid, content) for rid, content in _json(row[3]) or []])
    return row[0], _shown(cursor, sql["shown"], [row[1], row[0]])


def _reopened(cursor, sql: dict[str, str], campaign_id: int, annotator: Judge, lease: tuple,
              progress: dict[str, int]) -> NextResult:
    assignment_id, item_id, order, leased_at, expires_at = lease
    order = _json(order)
    shown = _shown(cursor, sql["shown_of_item"], [item_id], order=order)
    assignment = _assignment(
        id=assignment_id, campaign_id=campaign_id, item_id=item_id, annotator_id=annotator.pk,
        status=Assignment.Status.LEASED, display_order=order,
        leased_at=_from_db_datetime(leased_at), expires_at=_from_db_datetime(expires_at),
    )
    return NextResult(assignment, shown, progress)


def _from_db_datetime(value: datetime) -> datetime:
    """SQLite hands back naive UTC datetimes (PostgreSQL aware ones)."""
    return value if timezone.is_aware(value) else value.replace(tzinfo=UTC)


def assignment_lease_next(*, campaign_id: int, annotator: Judge) -> Assignment | None:
    """Return the annotator's open lease, or lease them the next item; None when none is left."""
    return lease_next(campaign_id=campaign_id, annotator=annotator).assignment


def _lock_own_assignment(assignment_id: int, annotator: Judge) -> Assignment:
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


def _record(cursor: Any, sql: dict[str, str], values: dict[str, Any], *, held: bool, counted: bool) -> tuple:
    """Count the judgment on its item, campaign and member, store it and close the assignment.

    Returns (judgment id, whether the membership counted it); the id is None when the item had
    no room for it (nothing is written then). A membership that did not count it (a paused or
    removed member) makes the caller raise, which rolls the transaction back.
    """
    cursor.execute(sql["count_in_lease" if held else "count_free"], [values["item"]])
    row = cursor.fetchone()
    if row is None:
        return None, False
    if counted:
        cursor.execute(sql["counter"], [int(bool(row[0])), values["campaign"], random.randrange(COUNTER_SHARDS)])
    scored = values["gold_correct"] is not None
    cursor.execute(
        sql["member_count"], [int(scored), int(bool(values["gold_correct"])), values["campaign"], values["annotator"]]
    )
    member_counted = cursor.rowcount > 0
    judgment_id = _insert(cursor, Judgment, values)
    cursor.execute(sql["submitted"], [_db_datetime(values["created_at"]), values["assignment"]])
    return judgment_id, member_counted


@dataclass
class _Submission:
    values: dict[str, Any]
    held: bool  # an open lease (not an expired one)
    is_gold: bool
    announce: bool  # the campaign announces its judgments (annotation.hooks)


def _checked_submission(row: tuple | None, assignment_id: int, annotator: Judge, answer: dict,
                        by_handle: bool = False) -> _Submission | tuple[Judgment, bool]:
    """Check a submit against its locked assignment row (`own_assignment`): the values to store,
    or (the judgment already stored, False) for a repeated submit; raise if it is refused.

    With `by_handle`, the answer names responses by the assignment's handles (what `next`
    showed); they are mapped back to response ids before the answer is checked."""
    if row is None:
        raise NotFoundError("Assignment not found.", extra={"assignment_id": assignment_id})
    (a_status, item_id, order, campaign_id, c_status, kind, allow_ties, allow_both_bad, use_strength,
     require_rationale, allow_editing, criteria, version, is_gold, gold, announce) = row
    if a_status == Assignment.Status.SUBMITTED:
        return Judgment.objects.get(assignment_id=assignment_id, supersedes__isnull=True), False
    if a_status == Assignment.Status.SKIPPED:
        raise ConflictError("You skipped this item; the judgment was not stored.")
    if c_status == Campaign.Status.CLOSED:
        raise ConflictError("This campaign is closed; the judgment was not stored.")
    order = _json(order)
    shown_as = None
    try:
        if by_handle:
            shown_as = assignment_handles(assignment_id, order)
            answer = answer_from_handles(answer, shown_as)
        cleaned = validate_answer(
            answer,
            kind=kind,
            options=PairwiseOptions(
                allow_ties=bool(allow_ties), allow_both_bad=bool(allow_both_bad), use_strength=bool(use_strength),
                require_rationale=bool(require_rationale), allow_editing=bool(allow_editing),
            ),
            response_ids=order,
            criteria=_criteria(kind, criteria),
            shown_as=shown_as,
        )
    except AnswerError as exc:
        raise field_error(exc.field, exc.message) from exc

    gold_correct = None
    if is_gold and kind == Campaign.Kind.PAIRWISE:  # gold checks are scored, never counted as progress
        gold_correct = _gold_correct(_json(gold), cleaned.outcome, cleaned.preferred_response_id)
    values = {
        "campaign": campaign_id,
        "item": item_id,
        "assignment": assignment_id,
        "annotator": annotator.pk,
        "outcome": cleaned.outcome,
        "preferred_response": cleaned.preferred_response_id,
        "strength": cleaned.strength,
        "answer": cleaned.answer,
        "rationale": cleaned.rationale,
        "edited_response": cleaned.edited_response,
        "display_order": order,
        "time_taken_ms": cleaned.time_taken_ms,
        "campaign_version": version,
        "gold_correct": gold_correct,
        "created_at": timezone.now(),
    }
    return _Submission(values, held=a_status == Assignment.Status.LEASED, is_gold=bool(is_gold),
                       announce=bool(announce))


def _stored(sub: _Submission) -> Judgment:
    """After a judgment is stored: the hooks, the live pages, and the Judgment (no query)."""
    v = sub.values
    if sub.announce:
        hooks.judgment_recorded(campaign_id=v["campaign"])
    events.campaign_changed(campaign_id=v["campaign"])
    judgment = Judgment(
        campaign_id=v["campaign"], item_id=v["item"], assignment_id=v["assignment"], annotator_id=v["annotator"],
        outcome=v["outcome"], preferred_response_id=v["preferred_response"], strength=v["strength"],
        answer=v["answer"], rationale=v["rationale"], edited_response=v["edited_response"],
        display_order=v["display_order"], time_taken_ms=v["time_taken_ms"], campaign_version=v["campaign_version"],
        gold_correct=v["gold_correct"], created_at=v["created_at"],
    )
    judgment._state.adding = False
    judgment._state.db = connection.alias
    return judgment


def _record_postgresql(cursor: Any, sql: dict[str, str], values: dict[str, Any], *, held: bool,
                       counted: bool) -> tuple:
    """`_record` in one statement (one round trip instead of five): data-modifying CTEs."""
    _, preps = _insert_sql(connection.vendor, Judgment, tuple(values))
    params = {
        name: v if prep is None else prep(v, connection)
        for (name, v), prep in zip(values.items(), preps, strict=True)
    }
    scored = values["gold_correct"] is not None
    params.update(
        held=held, held_n=int(held), counted=counted, shard=random.randrange(COUNTER_SHARDS),
        scored=int(scored), correct=int(bool(values["gold_correct"])),
    )
    cursor.execute(sql["record"], params)
    complete, member_rows, judgment_id = cursor.fetchone()
    if complete is None:
        return None, False
    return judgment_id, member_rows > 0


@transaction.atomic
def judgment_submit(*, assignment_id: int, annotator: Judge, answer: dict,
                    by_handle: bool = False) -> tuple[Judgment, bool]:
    """Store the annotator's judgment for the assignment; return (judgment, created).

    Idempotent on the assignment: a repeated submit returns the judgment already stored. A
    submit after the lease expired is accepted while the item still needs a judgment, and
    refused with a conflict otherwise. The answer names responses by id, or with `by_handle`
    by the handles the annotator was shown (`assignment_handles`).
    """
    with hot_cursor() as cursor:
        cursor.execute(_sql()["own_assignment"], [assignment_id, annotator.pk])
        row = cursor.fetchone()
    return judgment_submit_locked(row, assignment_id=assignment_id, annotator=annotator, answer=answer,
                                  by_handle=by_handle)


def submission_for_token(*, assignment_id: int, token: str) -> tuple | None:
    """The API's submit on PostgreSQL, first statement: who the token belongs to and, locked, their
    assignment (`own_assignment`'s row, or None): (user id, is active, is superuser, row). None
    for an unknown token. Run it in the transaction that goes on to `judgment_submit_locked`."""
    with hot_cursor() as cursor:
        cursor.execute(_sql()["own_assignment_for_token"], [token, assignment_id])
        found = cursor.fetchone()
    if found is None:
        return None
    user_id, is_active, is_superuser, *row = found
    return user_id, bool(is_active), bool(is_superuser), (None if row[0] is None else tuple(row))


def judgment_submit_locked(row: tuple | None, *, assignment_id: int, annotator: Judge,
                           answer: dict, by_handle: bool = False) -> tuple[Judgment, bool]:
    """`judgment_submit` once its assignment row is locked (None: not the annotator's)."""
    if not connection.in_atomic_block:
        raise RuntimeError("judgment_submit_locked runs in the transaction that locked the assignment")
    checked = _checked_submission(row, assignment_id, annotator, answer, by_handle)
    if isinstance(checked, tuple):
        return checked
    sql = _sql()
    with hot_cursor() as cursor:
        record = _record_postgresql if connection.vendor == "postgresql" else _record
        judgment_id, member_counted = record(
            cursor, sql, checked.values, held=checked.held, counted=not checked.is_gold
        )
        if judgment_id is None:
            raise ConflictError(
                "Your lease on this item expired and it already has all the judgments it needs; "
                "this answer was not stored. Load the next item to go on.",
                extra={"assignment_id": assignment_id},
            )
        if not member_counted and not annotator.is_superuser:
            _judge_membership(checked.values["campaign"], annotator)  # raises, naming why
            raise ForbiddenError("You may not judge in this campaign.")
    judgment = _stored(checked)
    judgment.pk = judgment_id
    return judgment, True


def submit_for(
    *, assignment_id: int, answer: Callable[[], dict], annotator: Judge | None = None, token: str | None = None
) -> tuple[int, Judgment]:
    """`submit` for the API: (201 for a new judgment or 200 for a repeated submit, the judgment).

    The answer names responses by the handles `next` showed (`assignment_handles`); they are
    mapped back to response ids before it is checked, and an unknown one is refused naming
    the field. For the user DRF authenticated, or for an API token (the hot path), checked as DRF's
    TokenAuthentication checks it. `answer()` returns the validated body; it is called in DRF's
    order, after authentication and before the assignment is looked at. On PostgreSQL one
    statement checks a token and locks the assignment.
    """
    if token is not None and connection.vendor == "postgresql":
        with transaction.atomic():
            found = submission_for_token(assignment_id=assignment_id, token=token)
            _check_token(found=found is not None, active=found is not None and found[1])
            user_id, _, is_superuser, row = found
            user = TokenUser(pk=user_id, is_superuser=is_superuser)
            judgment, created = judgment_submit_locked(
                row, assignment_id=assignment_id, annotator=user, answer=answer(), by_handle=True
            )
    else:
        user = annotator if token is None else token_user(token)
        judgment, created = judgment_submit(
            assignment_id=assignment_id, annotator=user, answer=answer(), by_handle=True
        )
    return (201 if created else 200), judgment


@dataclass(frozen=True)
class TokenUser:
    """A caller known by an API token, as the services need them (a Judge)."""

    pk: int
    is_superuser: bool


def token_user(key: str) -> TokenUser:
    """DRF's TokenAuthentication in one query: the same failures, the same messages."""
    with hot_cursor() as cursor:
        cursor.execute(token_sql(connection.vendor), [key])
        row = cursor.fetchone()
    _check_token(found=row is not None, active=row is not None and row[1])
    user_id, _, is_superuser = row
    return TokenUser(pk=user_id, is_superuser=bool(is_superuser))


def _check_token(*, found: bool, active: bool) -> None:
    """Refuse an unknown token, or one whose user is inactive, as DRF's TokenAuthentication does."""
    if not found:
        raise drf_exceptions.AuthenticationFailed("Invalid token.")
    if not active:
        raise drf_exceptions.AuthenticationFailed("User inactive or deleted.")


@functools.lru_cache(maxsize=256)
def _criteria_cached(kind: str, criteria_json: str) -> tuple:
    return tuple(validate_criteria(kind, json.loads(criteria_json)))


def _criteria(kind: str, criteria: Any) -> tuple:
    """The campaign's cleaned criteria (a campaign's schema is locked once judged, so cache it)."""
    text = criteria if isinstance(criteria, str) else json.dumps(criteria)
    return _criteria_cached(kind, text)


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
        with connection.cursor() as cursor:
            cursor.execute(_sql()["retake"], [assignment.item_id])
            retaken = cursor.rowcount > 0
        if not retaken:
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
