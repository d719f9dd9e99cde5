"""Serving: leases, exact overlap, idempotent submit, skip, expiry and late submits."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation.errors import ApplicationError, ConflictError, ForbiddenError, NotFoundError
from annotation.models import Assignment, Campaign, Item, Judgment, Membership
from annotation.services.campaigns import campaign_set_status
from annotation.services.serving import (
    assignment_lease_next,
    assignment_skip,
    judgment_submit,
    leases_expire,
)

pytestmark = pytest.mark.django_db


def expire(assignment: Assignment) -> None:
    now = timezone.now()
    Assignment.objects.filter(pk=assignment.pk).update(leased_at=now - timedelta(hours=1), expires_at=now - timedelta(seconds=1))


def prefer_first(assignment: Assignment, **extra) -> dict:
    return {"outcome": "preferred", "preferred_response_id": assignment.display_order[0], "strength": 2, **extra}


def test_next_leases_an_item_with_a_shuffled_display_order(campaign, annotator):
    """`next` leases an item; the display order is a permutation of the item's responses."""
    a = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    assert a.status == Assignment.Status.LEASED
    item_ids = set(a.item.item_responses.values_list("response_id", flat=True))
    assert set(a.display_order) == item_ids and len(a.display_order) == 2
    assert a.expires_at - a.leased_at == timedelta(seconds=campaign.lease_seconds)
    a.item.refresh_from_db()
    assert a.item.lease_count == 1


def test_display_order_is_randomized_per_assignment(make_campaign, make_user):
    """Across many assignments both orders are shown (not always the stored order)."""
    users = [make_user(f"u{i}", "annotator") for i in range(30)]
    campaign = make_campaign(items=1, overlap=30, annotators=users)
    firsts = {assignment_lease_next(campaign_id=campaign.pk, annotator=u).display_order[0] for u in users}
    assert len(firsts) == 2


def test_reentering_returns_the_open_lease(campaign, annotator):
    first = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    again = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    assert again.pk == first.pk
    assert Assignment.objects.filter(annotator=annotator).count() == 1


def test_submit_stores_judgment_against_response_ids_with_display_order(campaign, annotator):
    a = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    judgment, created = judgment_submit(
        assignment_id=a.pk, annotator=annotator,
        answer={"outcome": "preferred", "preferred_response_id": a.display_order[1], "strength": 3,
                "rationale": "  more complete  ", "time_taken_ms": 4200},
    )
    assert created
    assert judgment.preferred_response_id == a.display_order[1]
    assert judgment.display_order == a.display_order
    assert (judgment.strength, judgment.rationale, judgment.time_taken_ms) == (3, "more complete", 4200)
    assert judgment.campaign_version == campaign.version
    a.refresh_from_db()
    item = Item.objects.get(pk=a.item_id)
    assert a.status == Assignment.Status.SUBMITTED and a.completed_at is not None
    assert (item.judgment_count, item.lease_count) == (1, 0)


def test_submit_is_idempotent_on_the_assignment(campaign, annotator):
    """A repeated submit returns the stored judgment and counts nothing twice."""
    a = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    j1, created1 = judgment_submit(assignment_id=a.pk, annotator=annotator, answer=prefer_first(a))
    j2, created2 = judgment_submit(assignment_id=a.pk, annotator=annotator, answer={"outcome": "tie"})
    assert (created1, created2) == (True, False) and j1.pk == j2.pk
    assert Judgment.objects.count() == 1
    assert Item.objects.get(pk=a.item_id).judgment_count == 1


def test_overlap_is_exact_and_no_annotator_judges_an_item_twice(make_campaign, make_user):
    """With overlap 2 and three annotators, each item gets exactly 2 judgments by 2 people."""
    users = [make_user(f"a{i}", "annotator") for i in range(3)]
    campaign = make_campaign(items=3, overlap=2, annotators=users)
    served = 0
    for _ in range(5):
        for u in users:
            a = assignment_lease_next(campaign_id=campaign.pk, annotator=u)
            if a is not None:
                judgment_submit(assignment_id=a.pk, annotator=u, answer=prefer_first(a))
                served += 1
    assert served == 6
    for item in Item.objects.filter(campaign=campaign):
        assert item.judgment_count == 2
        assert item.judgments.values("annotator").distinct().count() == 2
    assert all(assignment_lease_next(campaign_id=campaign.pk, annotator=u) is None for u in users)


def test_items_closest_to_completion_are_served_first(make_campaign, make_user):
    users = [make_user(f"o{i}", "annotator") for i in range(2)]
    campaign = make_campaign(items=10, overlap=2, annotators=users)
    a = assignment_lease_next(campaign_id=campaign.pk, annotator=users[0])
    judgment_submit(assignment_id=a.pk, annotator=users[0], answer=prefer_first(a))
    b = assignment_lease_next(campaign_id=campaign.pk, annotator=users[1])
    assert b.item_id == a.item_id  # the half-done item is finished first


def test_higher_priority_first_among_equally_complete(make_campaign, annotator):
    campaign = make_campaign(items=5, annotators=[annotator])
    item = Item.objects.filter(campaign=campaign).order_by("-random_key").first()
    Item.objects.filter(pk=item.pk).update(priority=10)
    assert assignment_lease_next(campaign_id=campaign.pk, annotator=annotator).item_id == item.pk


def test_expired_lease_returns_the_item_to_the_pool(make_campaign, annotator, annotator2):
    campaign = make_campaign(items=1, overlap=1, annotators=[annotator, annotator2])
    a = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    assert assignment_lease_next(campaign_id=campaign.pk, annotator=annotator2) is None  # the only slot is leased
    expire(a)
    b = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator2)
    assert b is not None and b.item_id == a.item_id
    a.refresh_from_db()
    assert a.status == Assignment.Status.EXPIRED


def test_late_submit_is_accepted_while_the_item_still_needs_a_judgment(make_campaign, annotator):
    campaign = make_campaign(items=1, overlap=1, annotators=[annotator])
    a = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    expire(a)
    assert leases_expire(campaign_id=campaign.pk) == 1
    judgment, created = judgment_submit(assignment_id=a.pk, annotator=annotator, answer=prefer_first(a))
    assert created
    item = Item.objects.get(pk=a.item_id)
    assert (item.judgment_count, item.lease_count) == (1, 0)


def test_late_submit_gets_a_conflict_when_the_item_is_full(make_campaign, annotator, annotator2):
    campaign = make_campaign(items=1, overlap=1, annotators=[annotator, annotator2])
    a = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    expire(a)
    b = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator2)
    judgment_submit(assignment_id=b.pk, annotator=annotator2, answer=prefer_first(b))
    with pytest.raises(ConflictError, match="already has all the judgments it needs"):
        judgment_submit(assignment_id=a.pk, annotator=annotator, answer=prefer_first(a))
    assert Judgment.objects.count() == 1
    assert Item.objects.get(pk=a.item_id).judgment_count == 1


def test_skip_releases_the_lease_and_is_not_served_again(make_campaign, annotator):
    campaign = make_campaign(items=1, overlap=1, annotators=[annotator])
    a = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    assignment_skip(assignment_id=a.pk, annotator=annotator, reason="unsafe")
    a.refresh_from_db()
    assert (a.status, a.skip_reason) == (Assignment.Status.SKIPPED, "unsafe")
    assert Item.objects.get(pk=a.item_id).lease_count == 0
    assert assignment_lease_next(campaign_id=campaign.pk, annotator=annotator) is None
    with pytest.raises(ConflictError, match="You skipped this item"):
        judgment_submit(assignment_id=a.pk, annotator=annotator, answer=prefer_first(a))


def test_skip_rejects_unknown_reason_and_judged_items(campaign, annotator):
    a = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    with pytest.raises(ApplicationError, match="reason: must be one of"):
        assignment_skip(assignment_id=a.pk, annotator=annotator, reason="boring")
    judgment_submit(assignment_id=a.pk, annotator=annotator, answer=prefer_first(a))
    with pytest.raises(ConflictError, match="already judged"):
        assignment_skip(assignment_id=a.pk, annotator=annotator)


def test_someone_elses_assignment_is_refused(campaign, annotator, annotator2):
    """Another annotator's assignment is "not found": a forged id tells nothing."""
    a = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    with pytest.raises(NotFoundError, match="Assignment not found."):
        judgment_submit(assignment_id=a.pk, annotator=annotator2, answer=prefer_first(a))
    with pytest.raises(NotFoundError, match="Assignment not found."):
        assignment_skip(assignment_id=a.pk, annotator=annotator2)
    assert not Judgment.objects.exists()


def test_invalid_answers_name_the_field_and_store_nothing(campaign, annotator, make_campaign):
    a = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    other = make_campaign(items=1, name="Other", annotators=[annotator])
    foreign = assignment_lease_next(campaign_id=other.pk, annotator=annotator).display_order[0]
    cases = [
        ({"outcome": "maybe"}, "outcome: must be one of preferred, tie, both_bad"),
        ({"outcome": "preferred", "strength": 2}, "preferred_response_id: is required"),
        ({"outcome": "preferred", "preferred_response_id": foreign, "strength": 2},
         "preferred_response_id: is not one of this item's responses"),
        ({"outcome": "preferred", "preferred_response_id": a.display_order[0]}, "strength: is required"),
        ({"outcome": "preferred", "preferred_response_id": a.display_order[0], "strength": 4},
         "strength: must be 1, 2 or 3, not 4"),
        ({"outcome": "tie", "strength": 1}, "strength: must be empty when the outcome is tie"),
        ({"outcome": "tie", "edited_response": "x"}, "edited_response: this campaign does not allow editing"),
        ({"outcome": "tie", "time_taken_ms": -5}, "time_taken_ms: must be between"),
    ]
    for answer, message in cases:
        with pytest.raises(ApplicationError) as exc:
            judgment_submit(assignment_id=a.pk, annotator=annotator, answer=answer)
        assert message in exc.value.message, (answer, exc.value.message)
    assert Judgment.objects.count() == 0
    a.refresh_from_db()
    assert a.status == Assignment.Status.LEASED


def test_campaign_options_restrict_outcomes(make_campaign, annotator):
    campaign = make_campaign(items=1, annotators=[annotator], allow_ties=False, allow_both_bad=False,
                             use_strength=False, require_rationale=True)
    a = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    for answer, message in [
        ({"outcome": "tie"}, "does not allow ties"),
        ({"outcome": "both_bad"}, "does not allow 'both bad'"),
        ({"outcome": "preferred", "preferred_response_id": a.display_order[0], "strength": 1}, "does not ask for strength"),
        ({"outcome": "preferred", "preferred_response_id": a.display_order[0]}, "rationale: is required"),
    ]:
        with pytest.raises(ApplicationError, match=message):
            judgment_submit(assignment_id=a.pk, annotator=annotator, answer=answer)
    j, _ = judgment_submit(assignment_id=a.pk, annotator=annotator,
                           answer={"outcome": "preferred", "preferred_response_id": a.display_order[0], "rationale": "ok"})
    assert j.strength is None


def test_paused_campaign_serves_nothing_and_paused_member_gets_nothing(campaign, annotator):
    campaign_set_status(campaign=campaign, status=Campaign.Status.PAUSED)
    with pytest.raises(ConflictError, match="This campaign is paused"):
        assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    campaign_set_status(campaign=campaign, status=Campaign.Status.ACTIVE)
    Membership.objects.filter(campaign=campaign, user=annotator).update(is_active=False)
    with pytest.raises(ForbiddenError, match="paused by its manager"):
        assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)


def test_per_annotator_cap(make_campaign, annotator):
    campaign = make_campaign(items=5, annotators=[annotator])
    Membership.objects.filter(campaign=campaign, user=annotator).update(cap=2)
    for _ in range(2):
        a = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
        judgment_submit(assignment_id=a.pk, annotator=annotator, answer=prefer_first(a))
    assert assignment_lease_next(campaign_id=campaign.pk, annotator=annotator) is None


def test_closed_campaign_refuses_submit(campaign, annotator):
    a = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    campaign_set_status(campaign=campaign, status=Campaign.Status.CLOSED)
    with pytest.raises(ConflictError, match="closed"):
        judgment_submit(assignment_id=a.pk, annotator=annotator, answer=prefer_first(a))


def test_database_constraints_hold_the_invariants(campaign, annotator):
    """The database itself refuses a second assignment per (item, annotator) and over-target counts."""
    a = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    with pytest.raises(IntegrityError), transaction.atomic():
        Assignment.objects.create(campaign=campaign, item=a.item, annotator=annotator, display_order=[],
                                  leased_at=a.leased_at, expires_at=a.expires_at)
    with pytest.raises(IntegrityError), transaction.atomic():
        Item.objects.filter(pk=a.item_id).update(judgment_count=campaign.overlap)  # plus the open lease
    with pytest.raises(IntegrityError), transaction.atomic():
        Assignment.objects.filter(pk=a.pk).update(status="lost")
    with pytest.raises(IntegrityError), transaction.atomic():
        Campaign.objects.filter(pk=campaign.pk).update(overlap=0)
    judgment, _ = judgment_submit(assignment_id=a.pk, annotator=annotator, answer=prefer_first(a))
    with pytest.raises(IntegrityError), transaction.atomic():
        Judgment.objects.filter(pk=judgment.pk).update(preferred_response=None)


def test_paused_or_removed_annotator_cannot_submit_or_skip_an_old_lease(campaign, annotator):
    """Pausing or removing an annotator also stops submits on leases they took before."""
    a = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    Membership.objects.filter(campaign=campaign, user=annotator).update(is_active=False)
    with pytest.raises(ForbiddenError, match="paused by its manager"):
        judgment_submit(assignment_id=a.pk, annotator=annotator, answer=prefer_first(a))
    with pytest.raises(ForbiddenError, match="paused by its manager"):
        assignment_skip(assignment_id=a.pk, annotator=annotator)
    Membership.objects.filter(campaign=campaign, user=annotator).delete()
    with pytest.raises(ForbiddenError, match="not an annotator in this campaign"):
        judgment_submit(assignment_id=a.pk, annotator=annotator, answer=prefer_first(a))
    assert Judgment.objects.count() == 0


def gold_campaign(make_campaign, annotators, *, gold_rate: float, regular: int = 4, gold: int = 2):
    from annotation.services.imports import items_import
    from tests.conftest import jsonl, pair_rows

    campaign = make_campaign(items=0, active=False, annotators=annotators, gold_rate=gold_rate)
    rows = pair_rows(regular) + [{**r, "gold": {"preferred": 0}} for r in pair_rows(gold, prefix="g")]
    items_import(campaign=campaign, lines=jsonl(rows))
    campaign_set_status(campaign=campaign, status=Campaign.Status.ACTIVE)
    return campaign


def test_gold_checks_are_served_at_the_rate_and_scored(make_campaign, annotator):
    """With gold rate 1, gold checks come first; answers are scored against the gold answer."""
    campaign = gold_campaign(make_campaign, [annotator], gold_rate=1.0)
    gold_items = set(Item.objects.filter(campaign=campaign, is_gold=True).values_list("pk", flat=True))
    first = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    assert first.item_id in gold_items
    right = Item.objects.get(pk=first.item_id).gold["preferred_response_id"]
    j1, _ = judgment_submit(assignment_id=first.pk, annotator=annotator,
                            answer={"outcome": "preferred", "preferred_response_id": right, "strength": 1})
    second = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    assert second.item_id in gold_items
    j2, _ = judgment_submit(assignment_id=second.pk, annotator=annotator, answer={"outcome": "tie"})
    assert (j1.gold_correct, j2.gold_correct) == (True, False)
    m = Membership.objects.get(campaign=campaign, user=annotator)
    assert (m.gold_judged, m.gold_correct, m.gold_accuracy) == (2, 1, 0.5)
    # gold exhausted: regular work is served, and the gold check never counts as progress
    third = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    assert third.item_id not in gold_items
    from annotation.selectors import campaign_progress
    assert campaign_progress(campaign=campaign)["done"] == 0


def test_gold_checks_are_served_to_every_annotator_but_not_after_the_work_is_done(make_campaign, make_user):
    users = [make_user(f"g{i}", "annotator") for i in range(3)]
    campaign = gold_campaign(make_campaign, users, gold_rate=0.0, regular=3, gold=1)
    for u in users:  # rate 0: only regular items
        a = assignment_lease_next(campaign_id=campaign.pk, annotator=u)
        assert a is not None and not Item.objects.get(pk=a.item_id).is_gold
        judgment_submit(assignment_id=a.pk, annotator=u, answer=prefer_first(a))
    # the regular work is complete: nothing more is served, gold checks are not filler
    assert all(assignment_lease_next(campaign_id=campaign.pk, annotator=u) is None for u in users)


def test_gold_json_is_indistinguishable(client_for, make_campaign, annotator):
    from django.urls import reverse
    campaign = gold_campaign(make_campaign, [annotator], gold_rate=1.0, regular=1, gold=1)
    res = client_for(annotator).post(reverse("api:assignment_next", kwargs={"campaign_id": campaign.pk}), {},
                                     format="json")
    assert "gold" not in res.content.decode()
    assert set(res.json()["assignment"]["item"]) == {"id", "messages", "responses"}


def test_heartbeat_extends_and_retakes_a_lapsed_lease(make_campaign, annotator, annotator2):
    from annotation.services.serving import assignment_extend

    campaign = make_campaign(items=1, overlap=1, annotators=[annotator, annotator2])
    a = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator)
    Assignment.objects.filter(pk=a.pk).update(expires_at=a.leased_at + timedelta(seconds=31))
    extended = assignment_extend(assignment_id=a.pk, annotator=annotator)
    assert extended.expires_at > timezone.now() + timedelta(seconds=campaign.lease_seconds - 5)
    # lapsed and swept, but nobody took the slot: the heartbeat takes it back
    expire(a)
    leases_expire(campaign_id=campaign.pk)
    again = assignment_extend(assignment_id=a.pk, annotator=annotator)
    assert again.status == Assignment.Status.LEASED
    assert Item.objects.get(pk=a.item_id).lease_count == 1
    # lapsed and the slot went to someone else: a clear conflict
    expire(a)
    b = assignment_lease_next(campaign_id=campaign.pk, annotator=annotator2)
    assert b is not None
    with pytest.raises(ConflictError, match="went to someone else"):
        assignment_extend(assignment_id=a.pk, annotator=annotator)
    judgment_submit(assignment_id=b.pk, annotator=annotator2, answer=prefer_first(b))
    assert Item.objects.get(pk=a.item_id).judgment_count == 1


def test_a_superuser_judges_without_a_membership_and_a_non_member_gets_not_found(campaign, make_user, outsider):
    from annotation.services.serving import lease_next

    root = make_user("root", None)
    root.is_superuser = True
    root.save()
    result = lease_next(campaign_id=campaign.pk, annotator=root)
    assert result.assignment is not None and result.progress == {"done": 0, "total": 10, "mine": 0}
    assert [rid for rid, _ in result.shown.responses] == result.assignment.display_order
    again = lease_next(campaign_id=campaign.pk, annotator=root)  # the open lease comes back
    assert again.assignment.pk == result.assignment.pk and again.shown == result.shown
    judgment, created = judgment_submit(
        assignment_id=result.assignment.pk, annotator=root, answer=prefer_first(result.assignment)
    )
    assert created and Judgment.objects.get().annotator == root
    assert lease_next(campaign_id=campaign.pk, annotator=root).progress == {"done": 1, "total": 10, "mine": 1}
    with pytest.raises(NotFoundError):
        lease_next(campaign_id=campaign.pk, annotator=outsider)
    with pytest.raises(NotFoundError):
        lease_next(campaign_id=10**9, annotator=root)


def test_arbiter_next_answers_each_case_in_one_call(postgresql_only, make_campaign, annotator, annotator2, outsider):
    """`next` on PostgreSQL is one call of the migration's function; each answer it can give."""
    from rest_framework.authtoken.models import Token

    from annotation.services.serving import _json, next_call

    campaign = make_campaign(items=2, overlap=1, annotators=[annotator, annotator2])
    key = Token.objects.create(user=annotator).key

    assert next_call(campaign.pk, token="0" * 40).kind == "bad_token"
    leased = next_call(campaign.pk, token=key)
    assert (leased.kind, leased.user) == ("leased", annotator.pk)
    stored = Assignment.objects.get(pk=leased.assignment)
    assert stored.status == Assignment.Status.LEASED and stored.annotator_id == annotator.pk
    responses = sorted(stored.item.responses.values_list("pk", flat=True))
    assert sorted(stored.display_order) == responses == sorted(rid for rid, _ in _json(leased.responses))
    assert Item.objects.get(pk=leased.item).lease_count == 1

    again = next_call(campaign.pk, user_id=annotator.pk)  # re-entering: the same lease
    assert (again.kind, again.assignment) == ("reopened", leased.assignment)
    assert _json(again.order) == _json(leased.order) == stored.display_order

    second = next_call(campaign.pk, user_id=annotator2.pk)
    assert second.kind == "leased" and second.item != leased.item
    Assignment.objects.filter(pk=leased.assignment).update(status=Assignment.Status.SKIPPED)
    assert next_call(campaign.pk, user_id=annotator.pk).kind == "empty"  # both items taken for them

    assert next_call(campaign.pk, user_id=outsider.pk).kind == "no_member"
    Membership.objects.filter(campaign=campaign, user=annotator2).update(cap=0)
    Assignment.objects.filter(pk=second.assignment).update(status=Assignment.Status.SKIPPED)
    assert next_call(campaign.pk, user_id=annotator2.pk).kind == "capped"
    Membership.objects.filter(campaign=campaign, user=annotator2).update(is_active=False)
    assert next_call(campaign.pk, user_id=annotator2.pk).kind == "refused"

    annotator.is_active = False
    annotator.save(update_fields=["is_active"])
    assert next_call(campaign.pk, token=key).kind == "inactive"


def test_arbiter_next_display_order_is_a_uniform_shuffle(postgresql_only, make_campaign, make_user):
    """The function sorts the responses by the caller's random keys: both orders, about equally."""
    from annotation.services.serving import next_call

    users = [make_user(f"shuffle{i}", "annotator") for i in range(60)]
    campaign = make_campaign(items=1, overlap=60, annotators=users)
    firsts = [next_call(campaign.pk, user_id=u.pk) for u in users]
    assert {row.kind for row in firsts} == {"leased"}
    orders = {tuple(Assignment.objects.get(pk=row.assignment).display_order) for row in firsts}
    assert len(orders) == 2
    first_shown = [Assignment.objects.get(pk=row.assignment).display_order[0] for row in firsts]
    share = first_shown.count(first_shown[0]) / len(first_shown)
    assert 0.2 < share < 0.8  # 60 fair coin flips: outside this with probability < 1e-5


def test_arbiter_next_answers_a_superuser_and_lapsed_leases_itself(
    postgresql_only, make_campaign, make_user, annotator, annotator2, monkeypatch
):
    """PostgreSQL answers every `next` in the function: a superuser without a membership, and
    nothing open while lapsed leases hold the last places; the step-by-step path is not run."""
    from annotation.services import serving

    def steps(**kwargs):
        raise AssertionError("the step-by-step path serves SQLite only")

    monkeypatch.setattr(serving, "lease_next_steps", steps)
    root = make_user("root", None)
    root.is_superuser = True
    root.save()
    campaign = make_campaign(items=1, overlap=1, annotators=[annotator, annotator2])

    row = serving.next_call(campaign.pk, user_id=root.pk)
    assert (row.kind, row.user, row.role, row.cap, row.judged) == ("leased", root.pk, None, None, 0)
    taken = Assignment.objects.get(pk=row.assignment)
    assert taken.annotator_id == root.pk and Item.objects.get(pk=row.item).lease_count == 1
    assert serving.next_call(campaign.pk, user_id=annotator.pk).kind == "empty"  # the only place is leased

    expire(taken)  # lapsed, not yet swept: `next` returns it to the pool and leases the place
    result = serving.lease_next(campaign_id=campaign.pk, annotator=annotator)
    assert result.assignment is not None and result.assignment.item_id == taken.item_id
    taken.refresh_from_db()
    assert taken.status == Assignment.Status.EXPIRED
    assert Item.objects.get(pk=taken.item_id).lease_count == 1
    assert serving.lease_next(campaign_id=campaign.pk, annotator=annotator2).assignment is None

    campaign_set_status(campaign=campaign, status=Campaign.Status.PAUSED)
    with pytest.raises(ConflictError, match="This campaign is paused; nothing is being served."):
        serving.lease_next(campaign_id=campaign.pk, annotator=root)
