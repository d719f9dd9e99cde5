"""Every kind of feedback: the campaign's schema defines a valid judgment; the server stores it
against response ids and refuses anything else with the field named."""

import pytest
from django.urls import reverse

from annotation.core.judging import (
    AnswerError,
    CriteriaError,
    PairwiseOptions,
    validate_answer,
    validate_criteria,
)
from annotation.errors import ApplicationError
from annotation.models import Assignment, Campaign, ItemResponse, Judgment
from annotation.services.campaigns import campaign_create, campaign_set_status, membership_add
from annotation.services.imports import items_import
from annotation.services.serving import assignment_handles
from tests.conftest import jsonl

LIKERT = [
    {"name": "helpfulness", "label": "Helpfulness", "scale": {"min": 1, "max": 5, "labels": {"1": "Poor", "5": "Great"}}},
    {"name": "honesty", "label": "Honesty", "scale": {"min": 1, "max": 7}},
]
THUMBS = [{"name": "thumbs", "label": "Good reply?", "scale": {"min": 0, "max": 1, "labels": {"0": "Bad", "1": "Good"}}}]
OPTS = PairwiseOptions()


# --- the campaign schema ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "criteria", "message"),
    [
        ("rating", [], "criteria: a rating campaign needs at least one criterion"),
        ("ranking", LIKERT, "criteria: a ranking campaign ranks on one overall order"),
        ("rating", [{"name": "Help Fulness"}], "criteria[0].name: use 1–40 lowercase letters"),
        ("rating", [{"name": "a"}, {"name": "a"}], "criteria[1].name: 'a' is used twice"),
        ("rating", [{"name": "a", "scale": {"min": 5, "max": 1}}], "criteria[0].scale: min and max must be integers"),
        ("rating", [{"name": "a", "scale": {"min": 1, "max": 50}}], "criteria[0].scale: at most 21 points"),
        ("rating", [{"name": "a", "scale": {"min": 1, "max": 5, "labels": {"9": "x"}}}],
         "criteria[0].scale.labels: '9' is not a point of the 1–5 scale"),
        ("survey", [], "kind: must be one of pairwise, ranking, rating"),
    ],
)
def test_invalid_criteria_name_the_problem(kind, criteria, message):
    with pytest.raises(CriteriaError) as exc:
        validate_criteria(kind, criteria)
    assert message in str(exc.value)


def test_criteria_are_cleaned_with_defaults():
    (c,) = validate_criteria("rating", [{"name": "overall"}])
    assert c.as_dict() == {"name": "overall", "label": "Overall", "description": "",
                           "scale": {"min": 1, "max": 5, "labels": {}}}


# --- answers, pure ----------------------------------------------------------------------------


def test_ranking_with_ties_is_stored_as_groups():
    a = validate_answer({"ranking": [[3], [1, 2], ["4"]]}, kind="ranking", options=OPTS, response_ids=[1, 2, 3, 4])
    assert (a.outcome, a.answer) == ("ranked", {"ranking": [[3], [1, 2], [4]]})


@pytest.mark.parametrize(
    ("ranking", "message"),
    [
        ([[1], [2]], "ranking: response 3 is missing: rank every response"),
        ([[1], [2, 1], [3]], "ranking: response 1 appears more than once"),
        ([[1], [2], [99]], "ranking[2]: 99 is not one of this item's responses"),
        ([[1], [], [2, 3]], "ranking[1]: must be a non-empty list"),
        ("1,2,3", "ranking: must be a list of groups"),
    ],
)
def test_bad_rankings_are_refused(ranking, message):
    with pytest.raises(AnswerError) as exc:
        validate_answer({"ranking": ranking}, kind="ranking", options=OPTS, response_ids=[1, 2, 3])
    assert str(exc.value).startswith(message)


def test_ranking_ties_need_the_option_and_edits_need_a_single_top():
    with pytest.raises(AnswerError, match=r"ranking\[0\]: this campaign does not allow ties"):
        validate_answer({"ranking": [[1, 2]]}, kind="ranking", options=PairwiseOptions(allow_ties=False),
                        response_ids=[1, 2])
    editing = PairwiseOptions(allow_editing=True)
    with pytest.raises(AnswerError, match="edited_response: an edit rewrites the top-ranked response"):
        validate_answer({"ranking": [[1, 2]], "edited_response": "better"}, kind="ranking", options=editing,
                        response_ids=[1, 2])
    a = validate_answer({"ranking": [[2], [1]], "edited_response": "better"}, kind="ranking", options=editing,
                        response_ids=[1, 2])
    assert a.edited_response == "better" and a.answer["edited_response_id"] == 2


def test_ratings_per_response_per_criterion():
    criteria = validate_criteria("rating", LIKERT)
    a = validate_answer({"ratings": {"1": {"helpfulness": 4, "honesty": 7}, "2": {"helpfulness": 1, "honesty": 3}}},
                        kind="rating", options=OPTS, response_ids=[1, 2], criteria=criteria)
    assert a.outcome == "rated" and a.answer["ratings"]["1"] == {"helpfulness": 4, "honesty": 7}


@pytest.mark.parametrize(
    ("ratings", "message"),
    [
        ({"1": {"helpfulness": 6, "honesty": 3}, "2": {"helpfulness": 1, "honesty": 3}},
         "ratings.1.helpfulness: must be an integer from 1 to 5, not 6"),
        ({"1": {"helpfulness": 4}, "2": {"helpfulness": 1, "honesty": 3}}, "ratings.1.honesty: is missing"),
        ({"1": {"helpfulness": 4, "honesty": 3}}, "ratings: response 2 is missing"),
        ({"1": {"helpfulness": 4, "honesty": 3, "wit": 2}, "2": {"helpfulness": 1, "honesty": 3}},
         "ratings.1.wit: is not a criterion of this campaign"),
        ({"7": {"helpfulness": 4, "honesty": 3}}, "ratings: 7 is not one of this item's responses"),
        ({"1": {"helpfulness": "4", "honesty": 3}, "2": {}}, "ratings.1.helpfulness: must be an integer"),
    ],
)
def test_bad_ratings_are_refused(ratings, message):
    criteria = validate_criteria("rating", LIKERT)
    with pytest.raises(AnswerError) as exc:
        validate_answer({"ratings": ratings}, kind="rating", options=OPTS, response_ids=[1, 2], criteria=criteria)
    assert str(exc.value).startswith(message)


def test_multi_criteria_pairwise_needs_a_winner_per_criterion():
    criteria = validate_criteria("pairwise", [{"name": "helpfulness"}, {"name": "harmlessness"}])
    base = {"outcome": "preferred", "preferred_response_id": 1, "strength": 2}
    a = validate_answer({**base, "criteria": {"helpfulness": 1, "harmlessness": "tie"}}, kind="pairwise",
                        options=OPTS, response_ids=[1, 2], criteria=criteria)
    assert a.answer == {"criteria": {"helpfulness": 1, "harmlessness": "tie"}} and a.preferred_response_id == 1
    with pytest.raises(AnswerError, match="criteria.harmlessness: is missing"):
        validate_answer({**base, "criteria": {"helpfulness": 1}}, kind="pairwise", options=OPTS,
                        response_ids=[1, 2], criteria=criteria)
    with pytest.raises(AnswerError, match="criteria.helpfulness: 5 is not one of this item's responses"):
        validate_answer({**base, "criteria": {"helpfulness": 5, "harmlessness": 1}}, kind="pairwise",
                        options=OPTS, response_ids=[1, 2], criteria=criteria)


def test_flags_are_checked():
    a = validate_answer({"outcome": "tie", "flags": ["unsafe", "unsafe", "broken"]}, kind="pairwise", options=OPTS,
                        response_ids=[1, 2])
    assert a.answer == {"flags": ["broken", "unsafe"]}
    with pytest.raises(AnswerError, match="flags: 'boring' is not one of"):
        validate_answer({"outcome": "tie", "flags": ["boring"]}, kind="pairwise", options=OPTS, response_ids=[1, 2])


# --- end to end through the API ---------------------------------------------------------------


def _campaign(manager, annotator, *, kind, criteria=None, k=3, **options) -> Campaign:
    campaign = campaign_create(created_by=manager, name=f"{kind} test", kind=kind, criteria=criteria, **options)
    rows = [{"id": f"q{i}", "messages": [{"role": "user", "content": f"Q{i}"}],
             "responses": [{"content": f"reply {j}", "model": f"m{j}"} for j in range(k)]} for i in range(2)]
    items_import(campaign=campaign, lines=jsonl(rows))
    campaign_set_status(campaign=campaign, status=Campaign.Status.ACTIVE)
    membership_add(campaign=campaign, user=annotator, role="annotator")
    return campaign


def _lease(client, campaign) -> dict:
    res = client.post(reverse("api:assignment_next", kwargs={"campaign_id": campaign.pk}), {}, format="json")
    assert res.status_code == 200, res.content
    return res.json()["assignment"]


def _response_ids(assignment: dict) -> dict[str, int]:
    """{handle: response id} of a leased assignment, as the server maps them back."""
    order = Assignment.objects.get(pk=assignment["id"]).display_order
    return {handle: rid for rid, handle in assignment_handles(assignment["id"], order).items()}


def _submit(client, assignment_id, body):
    return client.post(reverse("api:judgment_submit", kwargs={"assignment_id": assignment_id}), body, format="json")


@pytest.mark.django_db
def test_ranking_campaign_end_to_end(client_for, manager, annotator):
    campaign = _campaign(manager, annotator, kind="ranking", k=4, allow_editing=True)
    client = client_for(annotator)
    a = _lease(client, campaign)
    ids = [r["id"] for r in a["item"]["responses"]]
    assert len(ids) == 4
    bad = _submit(client, a["id"], {"outcome": "ranked", "ranking": [[ids[0]], [ids[1]], [ids[2]]]})
    assert bad.status_code == 400 and bad.json()["message"] == f"ranking: response {ids[3]} is missing: rank every response"
    res = _submit(client, a["id"], {"outcome": "ranked", "ranking": [[ids[2]], [ids[0], ids[3]], [ids[1]]],
                                    "edited_response": "An even better reply", "flags": ["cant_judge"]})
    assert res.status_code == 201, res.content
    assert res.json()["answer"] == {"ranking": [[ids[2]], [ids[0], ids[3]], [ids[1]]], "edited_response_id": ids[2],
                                    "flags": ["cant_judge"]}
    j = Judgment.objects.get()
    rid = _response_ids(a)
    assert j.outcome == "ranked" and j.preferred_response_id is None
    assert j.answer == {"ranking": [[rid[ids[2]]], [rid[ids[0]], rid[ids[3]]], [rid[ids[1]]]],
                        "edited_response_id": rid[ids[2]], "flags": ["cant_judge"]}
    assert j.edited_response == "An even better reply" and j.display_order == [rid[h] for h in ids]


@pytest.mark.django_db
def test_rating_campaign_end_to_end(client_for, manager, annotator):
    campaign = _campaign(manager, annotator, kind="rating", criteria=LIKERT, k=2)
    client = client_for(annotator)
    a = _lease(client, campaign)
    r1, r2 = (r["id"] for r in a["item"]["responses"])
    res = _submit(client, a["id"], {"outcome": "rated", "ratings": {str(r1): {"helpfulness": 9, "honesty": 1},
                                                                      str(r2): {"helpfulness": 1, "honesty": 1}}})
    assert res.status_code == 400
    assert res.json()["extra"] == {"fields": {f"ratings.{r1}.helpfulness": ["must be an integer from 1 to 5, not 9"]}}
    res = _submit(client, a["id"], {"outcome": "rated", "ratings": {str(r1): {"helpfulness": 5, "honesty": 6},
                                                                      str(r2): {"helpfulness": 2, "honesty": 4}}})
    assert res.status_code == 201
    rid = _response_ids(a)
    assert Judgment.objects.get().answer == {"ratings": {str(rid[r1]): {"helpfulness": 5, "honesty": 6},
                                                         str(rid[r2]): {"helpfulness": 2, "honesty": 4}}}


@pytest.mark.django_db
def test_thumbs_single_response_with_reason(client_for, manager, annotator):
    campaign = _campaign(manager, annotator, kind="rating", criteria=THUMBS, k=1, allow_editing=True)
    client = client_for(annotator)
    a = _lease(client, campaign)
    (rid,) = (r["id"] for r in a["item"]["responses"])
    res = _submit(client, a["id"], {"outcome": "rated", "ratings": {str(rid): {"thumbs": 0}},
                                    "rationale": "Wrong capital", "edited_response": "The capital is Canberra."})
    assert res.status_code == 201, res.content
    j = Judgment.objects.get()
    stored = _response_ids(a)[rid]
    assert j.answer["ratings"] == {str(stored): {"thumbs": 0}} and j.rationale == "Wrong capital"
    assert j.edited_response == "The capital is Canberra." and j.answer["edited_response_id"] == stored


@pytest.mark.django_db
def test_an_answer_for_another_kind_or_another_item_is_refused(client_for, manager, annotator):
    campaign = _campaign(manager, annotator, kind="rating", criteria=THUMBS, k=1)
    client = client_for(annotator)
    first = _lease(client, campaign)
    res = _submit(client, first["id"], {"outcome": "preferred", "preferred_response_id": first["item"]["responses"][0]["id"]})
    assert res.status_code == 400 and res.json()["message"] == "outcome: must be 'rated' in a rating campaign"
    # a response id from another item is refused too, and so is this item's own raw response id
    foreign = ItemResponse.objects.exclude(item_id=first["item"]["id"]).first().response_id
    own = ItemResponse.objects.get(item_id=first["item"]["id"]).response_id
    for rid in (foreign, own):
        res = _submit(client, first["id"], {"outcome": "rated", "ratings": {str(rid): {"thumbs": 1}}})
        assert res.status_code == 400
        assert res.json()["message"] == "ratings: is not a response of this item (send the ids `next` gave)"
    assert not Judgment.objects.exists()


@pytest.mark.django_db
def test_campaign_create_refuses_bad_criteria_through_the_api(client_for, manager):
    res = client_for(manager).post(reverse("api:campaign_create"),
                                   {"name": "r", "kind": "rating", "criteria": [{"name": "x", "scale": {"min": 3, "max": 3}}]},
                                   format="json")
    assert res.status_code == 400
    assert res.json()["message"] == "criteria[0].scale: min and max must be integers with min < max"
    assert res.json()["extra"] == {"fields": {"criteria": ["criteria[0].scale: min and max must be integers with min < max"]}}
    with pytest.raises(ApplicationError, match="criteria: a rating campaign needs at least one criterion"):
        campaign_create(created_by=manager, name="x", kind="rating")
