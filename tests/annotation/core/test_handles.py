"""Per-assignment response handles: opaque, stable within an assignment, different across them,
and mapped back to response ids with the field named when a value is not one of them."""

import pytest
from scipy.stats import binomtest

from annotation.core.handles import (
    HANDLE_CHARS,
    answer_from_handles,
    answer_to_handles,
    handle_key,
    response_handles,
)
from annotation.core.judging import AnswerError

KEY = handle_key("test-secret")
NOT_SHOWN = "is not a response of this item (send the ids `next` gave)"


def test_handles_are_stable_within_an_assignment_and_differ_between_assignments():
    """The same assignment always names a response the same way; another assignment of the same
    item (or another key) names it differently, and no handle shows the id."""
    first = response_handles(KEY, 7, [101, 102])
    assert response_handles(KEY, 7, [101, 102]) == first
    assert response_handles(KEY, 7, [102, 101]) == first  # the display order does not change them
    other = response_handles(KEY, 8, [101, 102])
    assert set(first.values()).isdisjoint(other.values())
    assert set(first.values()).isdisjoint(response_handles(handle_key("another-secret"), 7, [101, 102]).values())
    assert all(len(h) == HANDLE_CHARS and h.isalnum() and h not in ("101", "102") for h in first.values())


def test_a_collision_within_an_item_lengthens_every_handle_of_the_item():
    """One-character handles must collide among 40 responses; each is then lengthened (the same
    way every time) until all differ, and each is a prefix of the full handle."""
    handles = response_handles(KEY, 3, range(40), width=1)
    assert len(set(handles.values())) == 40
    assert len({len(h) for h in handles.values()}) == 1 and len(next(iter(handles.values()))) > 1
    assert handles == response_handles(KEY, 3, range(40), width=1)
    full = response_handles(KEY, 3, range(40), width=64)
    assert all(full[rid].startswith(h) for rid, h in handles.items())


def test_handles_carry_no_order():
    """Over 400 pairs of consecutive ids, the lower handle is the lower id about half the time."""
    lower = sum(
        min(h := response_handles(KEY, aid, [2 * aid, 2 * aid + 1]), key=h.get) == 2 * aid for aid in range(400)
    )
    assert binomtest(lower, 400, 0.5).pvalue > 0.01


def test_an_answer_in_handles_becomes_the_same_answer_in_ids():
    """Every place an answer names a response is mapped: the preferred one, criteria winners, ranking
    groups (a bare handle too) and rating keys; 'tie' and everything else is kept as given."""
    h = response_handles(KEY, 1, [11, 12, 13])
    a, b, c = h[11], h[12], h[13]
    given = {"outcome": "preferred", "preferred_response_id": b, "strength": 2, "rationale": "why",
             "criteria": {"helpfulness": a, "honesty": "tie"}}
    assert answer_from_handles(given, h) == {**given, "preferred_response_id": 12,
                                             "criteria": {"helpfulness": 11, "honesty": "tie"}}
    assert answer_from_handles({"outcome": "ranked", "ranking": [[c], [a, b]]}, h)["ranking"] == [[13], [11, 12]]
    assert answer_from_handles({"outcome": "ranked", "ranking": [c, [a, b]]}, h)["ranking"] == [13, [11, 12]]
    ratings = {"outcome": "rated", "ratings": {a: {"x": 1}, b: {"x": 2}, c: {"x": 3}}}
    assert answer_from_handles(ratings, h)["ratings"] == {"11": {"x": 1}, "12": {"x": 2}, "13": {"x": 3}}
    assert answer_from_handles({"outcome": "tie", "preferred_response_id": None}, h) == {
        "outcome": "tie", "preferred_response_id": None}
    assert answer_from_handles(["not", "an", "object"], h) == ["not", "an", "object"]  # validate_answer names it


@pytest.mark.parametrize(
    ("answer", "field"),
    [
        ({"outcome": "preferred", "preferred_response_id": 11}, "preferred_response_id"),  # the raw id
        ({"outcome": "preferred", "preferred_response_id": "11"}, "preferred_response_id"),
        ({"outcome": "preferred", "preferred_response_id": "OTHER"}, "preferred_response_id"),  # another's
        ({"outcome": "preferred", "criteria": {"helpfulness": 12}}, "criteria.helpfulness"),
        ({"outcome": "ranked", "ranking": [["A"], [12]]}, "ranking[1]"),
        ({"outcome": "rated", "ratings": {"13": {"x": 1}}}, "ratings"),
    ],
)
def test_a_value_that_is_not_a_handle_of_this_assignment_is_refused_naming_the_field(answer, field):
    h = response_handles(KEY, 1, [11, 12, 13])
    other = response_handles(KEY, 2, [11, 12, 13])
    fill = {"A": h[11], "OTHER": other[11]}
    answer = {k: fill.get(v, v) if isinstance(v, str) else v for k, v in answer.items()}
    if "ranking" in answer:
        answer["ranking"] = [[fill.get(x, x) for x in g] for g in answer["ranking"]]
    with pytest.raises(AnswerError) as err:
        answer_from_handles(answer, h)
    assert (err.value.field, err.value.message) == (field, NOT_SHOWN)
    assert str(err.value) == f"{field}: {NOT_SHOWN}"


def test_a_stored_answer_is_shown_back_in_handles():
    """answer_to_handles undoes answer_from_handles for what is stored (ratings keyed by id text)."""
    h = response_handles(KEY, 5, [21, 22, 23])
    stored = {"ranking": [[23], [21, 22]], "edited_response_id": 23, "flags": ["unsafe"],
              "criteria": {"helpfulness": 22, "honesty": "tie"}, "ratings": {"21": {"x": 1}}}
    shown = answer_to_handles(stored, h)
    assert shown == {"ranking": [[h[23]], [h[21], h[22]]], "edited_response_id": h[23], "flags": ["unsafe"],
                     "criteria": {"helpfulness": h[22], "honesty": "tie"}, "ratings": {h[21]: {"x": 1}}}
    assert answer_from_handles({"ranking": shown["ranking"], "criteria": shown["criteria"],
                                "ratings": shown["ratings"]}, h) == {
        "ranking": [[23], [21, 22]], "criteria": {"helpfulness": 22, "honesty": "tie"}, "ratings": {"21": {"x": 1}}}
