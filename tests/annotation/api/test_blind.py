"""Blind by construction: what an annotator receives names each response by a handle that holds for
that assignment only and carries no order; submit maps the handles back to response ids."""

import json
import random

import pytest
from django.urls import reverse
from scipy.stats import binomtest

from annotation.models import Assignment, Item, Judgment
from annotation.models import Response as ResponseModel
from annotation.services import serving
from annotation.services.campaigns import campaign_set_status
from annotation.services.imports import items_import

NOT_SHOWN = "is not a response of this item (send the ids `next` gave)"


def _next(client, campaign) -> dict:
    res = client.post(reverse("api:assignment_next", kwargs={"campaign_id": campaign.pk}), {}, format="json")
    assert res.status_code == 200, res.content
    return res.json()["assignment"]


def _submit(client, assignment_id: int, body: dict):
    return client.post(reverse("api:judgment_submit", kwargs={"assignment_id": assignment_id}), body, format="json")


def _trl_lines(n: int) -> list[str]:
    """TRL preference rows, `chosen` written before `rejected` as in every TRL file."""
    return [json.dumps({"prompt": f"Question {i}?", "chosen": f"Good answer {i}.", "rejected": f"Poor answer {i}."})
            for i in range(n)]


@pytest.mark.django_db(transaction=True, reset_sequences=True)
def test_neither_the_first_shown_nor_the_lower_handle_tells_which_reply_is_chosen(
    client_for, make_campaign, annotator, settings, monkeypatch
):
    """200 imported TRL pairs, each leased to an annotator through the API: the first-shown reply and
    the lexicographically lower handle are `chosen` at rates a two-sided binomial test cannot tell
    from 0.5, while the lower response id, which annotators no longer see, is `chosen` 200 times in
    200. Repeatable: a fixed secret, a seeded display order and fresh id sequences."""
    settings.SECRET_KEY = "blind-test-secret"
    monkeypatch.setattr(serving, "DISPLAY_ORDER_RNG", random.Random(19))
    campaign = make_campaign(items=0, active=False, annotators=[annotator], use_strength=False)
    items_import(campaign=campaign, lines=_trl_lines(200))
    Item.objects.filter(campaign=campaign).update(random_key=0.0)  # serve in id order (the import draws keys)
    campaign_set_status(campaign=campaign, status="active")
    client = client_for(annotator)

    first_is_chosen = lower_handle_is_chosen = lower_id_is_chosen = 0
    for _ in range(200):
        shown = _next(client, campaign)
        responses = shown["item"]["responses"]
        texts = {r["id"]: r["content"] for r in responses}
        first_is_chosen += texts[responses[0]["id"]].startswith("Good")
        lower_handle_is_chosen += texts[min(texts)].startswith("Good")
        res = _submit(client, shown["id"], {"outcome": "preferred", "preferred_response_id": responses[0]["id"]})
        assert res.status_code == 201, res.content
    assert _next(client, campaign) is None

    for item in Item.objects.filter(campaign=campaign).prefetch_related("item_responses__response"):
        replies = {link.response_id: link.response.content for link in item.item_responses.all()}
        lower_id_is_chosen += replies[min(replies)].startswith("Good")
    assert binomtest(first_is_chosen, 200, 0.5).pvalue > 0.01, first_is_chosen
    assert binomtest(lower_handle_is_chosen, 200, 0.5).pvalue > 0.01, lower_handle_is_chosen
    # The negative control: what annotators used to see gives the label away every time.
    assert lower_id_is_chosen == 200 and binomtest(lower_id_is_chosen, 200, 0.5).pvalue < 1e-50
    # Every judgment is stored against the response shown first, by its id.
    judgments = Judgment.objects.filter(campaign=campaign).select_related("assignment")
    assert judgments.count() == 200
    assert all(j.preferred_response_id == j.assignment.display_order[0] for j in judgments)


@pytest.mark.django_db
def test_handles_are_stable_in_an_assignment_and_differ_between_assignments(client_for, make_campaign, annotator,
                                                                           annotator2):
    """Asking again for the open lease names its responses the same way; another annotator's
    assignment of the same item names them differently; no handle is a response id."""
    campaign = make_campaign(items=1, overlap=2, annotators=[annotator, annotator2])
    mine = _next(client_for(annotator), campaign)
    assert _next(client_for(annotator), campaign) == mine
    theirs = _next(client_for(annotator2), campaign)
    assert mine["item"]["id"] == theirs["item"]["id"]
    mine_ids = {r["id"] for r in mine["item"]["responses"]}
    theirs_ids = {r["id"] for r in theirs["item"]["responses"]}
    assert mine_ids.isdisjoint(theirs_ids)
    raw = {str(pk) for pk in ResponseModel.objects.values_list("pk", flat=True)}
    assert all(isinstance(h, str) for h in mine_ids | theirs_ids) and not (mine_ids | theirs_ids) & raw


@pytest.mark.django_db
def test_a_raw_response_id_or_another_assignments_handle_is_refused_naming_the_field(
    client_for, make_campaign, manager, annotator, annotator2
):
    """Submit takes only this assignment's handles: a response's database id, or the handle another
    annotator was given for the same response, is a 400 naming the field, and nothing is stored."""
    criteria = [{"name": "helpfulness", "label": "Helpfulness"}]
    campaign = make_campaign(items=1, overlap=2, annotators=[annotator, annotator2], criteria=criteria)
    client = client_for(annotator)
    mine = _next(client, campaign)
    theirs = _next(client_for(annotator2), campaign)
    order = Assignment.objects.get(pk=mine["id"]).display_order
    handle_of = {rid: r["id"] for rid, r in zip(order, mine["item"]["responses"], strict=True)}
    their_handle = theirs["item"]["responses"][0]["id"]
    good = {"outcome": "preferred", "preferred_response_id": handle_of[order[1]], "strength": 1,
            "criteria": {"helpfulness": handle_of[order[0]]}}
    for field, body in [
        ("preferred_response_id", {**good, "preferred_response_id": order[1]}),
        ("preferred_response_id", {**good, "preferred_response_id": str(order[1])}),
        ("preferred_response_id", {**good, "preferred_response_id": their_handle}),
        ("criteria.helpfulness", {**good, "criteria": {"helpfulness": order[0]}}),
        ("criteria.helpfulness", {**good, "criteria": {"helpfulness": their_handle}}),
    ]:
        res = _submit(client, mine["id"], body)
        assert res.status_code == 400, (field, res.content)
        assert res.json() == {"message": f"{field}: {NOT_SHOWN}", "extra": {"fields": {field: [NOT_SHOWN]}}}
    assert not Judgment.objects.exists()

    res = _submit(client, mine["id"], good)
    assert res.status_code == 201, res.content
    assert res.json()["preferred_response_id"] == handle_of[order[1]]
    assert res.json()["answer"] == {"criteria": {"helpfulness": handle_of[order[0]]}}
    judgment = Judgment.objects.get()
    assert judgment.preferred_response_id == order[1]
    assert judgment.answer == {"criteria": {"helpfulness": order[0]}}


@pytest.mark.django_db
def test_handles_cost_no_database_statement(client_for, make_campaign, annotator, annotator2):
    """Naming responses by handle is pure computation on what next and submit already read: the API's
    next and submit run exactly the statements the services run with response ids."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from annotation.services.serving import judgment_submit, lease_next

    if connection.vendor == "postgresql":
        pytest.skip("PostgreSQL runs these on a prepared psycopg cursor, which Django's capture does not see")
    campaign = make_campaign(items=2, overlap=2, annotators=[annotator, annotator2])
    client = client_for(annotator)
    with CaptureQueriesContext(connection) as by_api:
        shown = _next(client, campaign)
    with CaptureQueriesContext(connection) as by_service:
        leased = lease_next(campaign_id=campaign.pk, annotator=annotator2).assignment
    assert len(by_api) == len(by_service) > 0
    with CaptureQueriesContext(connection) as by_api:
        res = _submit(client, shown["id"], {"outcome": "preferred", "strength": 2,
                                            "preferred_response_id": shown["item"]["responses"][0]["id"]})
    assert res.status_code == 201, res.content
    with CaptureQueriesContext(connection) as by_service:
        judgment_submit(assignment_id=leased.pk, annotator=annotator2,
                        answer={"outcome": "preferred", "strength": 2, "preferred_response_id": leased.display_order[0]})
    assert len(by_api) == len(by_service) > 0
