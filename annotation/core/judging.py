"""What a valid answer is, given a campaign's kind and options. No Django here.

`validate_pairwise_answer` returns the cleaned answer or raises AnswerError naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

OUTCOMES = ("preferred", "tie", "both_bad")
STRENGTHS = {1: "slightly better", 2: "clearly better", 3: "much better"}
MAX_RATIONALE = 10_000
MAX_EDIT = 100_000
MAX_TIME_MS = 24 * 3600 * 1000


class AnswerError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class PairwiseOptions:
    allow_ties: bool = True
    allow_both_bad: bool = True
    use_strength: bool = True
    require_rationale: bool = False
    allow_editing: bool = False


@dataclass(frozen=True)
class Answer:
    """A judgment's cleaned answer, stored against response ids."""

    outcome: str
    preferred_response_id: int | None
    strength: int | None
    rationale: str
    edited_response: str
    time_taken_ms: int | None
    answer: dict[str, Any]


def _int_or_none(value: Any, field: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise AnswerError(field, "must be an integer")
    return value


def validate_pairwise_answer(
    payload: dict[str, Any], *, options: PairwiseOptions, response_ids: Sequence[int]
) -> Answer:
    """Return the cleaned answer, or raise AnswerError naming the field and the fix."""
    outcome = payload.get("outcome")
    if outcome not in OUTCOMES:
        raise AnswerError("outcome", f"must be one of {', '.join(OUTCOMES)}")
    if outcome == "tie" and not options.allow_ties:
        raise AnswerError("outcome", "this campaign does not allow ties; choose a response")
    if outcome == "both_bad" and not options.allow_both_bad:
        raise AnswerError("outcome", "this campaign does not allow 'both bad'; choose a response")

    preferred = _int_or_none(payload.get("preferred_response_id"), "preferred_response_id")
    strength = _int_or_none(payload.get("strength"), "strength")
    if outcome == "preferred":
        if preferred is None:
            raise AnswerError("preferred_response_id", "is required when one response is preferred")
        if preferred not in response_ids:
            raise AnswerError("preferred_response_id", "is not one of this item's responses")
        if options.use_strength:
            if strength is None:
                raise AnswerError("strength", "is required: 1 slightly, 2 clearly or 3 much better")
            if strength not in STRENGTHS:
                raise AnswerError("strength", f"must be 1, 2 or 3, not {strength}")
        elif strength is not None:
            raise AnswerError("strength", "this campaign does not ask for strength; leave it out")
    else:
        if preferred is not None:
            raise AnswerError("preferred_response_id", f"must be empty when the outcome is {outcome}")
        if strength is not None:
            raise AnswerError("strength", f"must be empty when the outcome is {outcome}")

    rationale, edited, time_taken, _ = _common(payload, options)
    if edited and outcome != "preferred":
        raise AnswerError("edited_response", "an edit rewrites the preferred response; choose one first")

    return Answer(
        outcome=outcome,
        preferred_response_id=preferred if outcome == "preferred" else None,
        strength=strength if outcome == "preferred" else None,
        rationale=rationale,
        edited_response=edited,
        time_taken_ms=time_taken,
        answer={},
    )


# --- Every kind ---------------------------------------------------------------------------------

KINDS = ("pairwise", "ranking", "rating")
FLAG_REASONS = {
    "unsafe": "Unsafe content",
    "private_data": "Private data",
    "broken": "Broken item",
    "cant_judge": "Can't judge",
}
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")
MAX_SCALE_POINTS = 21


class CriteriaError(ValueError):
    """The campaign's criteria are not valid; the message names the criterion and the fix."""


@dataclass(frozen=True)
class Criterion:
    name: str
    label: str
    description: str
    low: int
    high: int
    labels: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "description": self.description,
            "scale": {"min": self.low, "max": self.high, "labels": dict(self.labels)},
        }


def validate_criteria(kind: str, criteria: Any) -> list[Criterion]:
    """Return the campaign's criteria, cleaned; rating campaigns need at least one.

    Each criterion: ``{"name": "helpfulness", "label": "Helpfulness", "description": "...",
    "scale": {"min": 1, "max": 5, "labels": {"1": "Poor", "5": "Excellent"}}}``. A 0–1 scale
    is thumbs down / up. Pairwise criteria are dimensions with a winner each; their scale is
    not used.
    """
    if kind not in KINDS:
        raise CriteriaError(f"kind: must be one of {', '.join(KINDS)}")
    if criteria in (None, ""):
        criteria = []
    if not isinstance(criteria, list):
        raise CriteriaError("criteria: must be a list of {name, label, scale} objects")
    if kind == "rating" and not criteria:
        raise CriteriaError("criteria: a rating campaign needs at least one criterion to rate on")
    if kind == "ranking" and criteria:
        raise CriteriaError("criteria: a ranking campaign ranks on one overall order; leave criteria empty")
    out: list[Criterion] = []
    for i, c in enumerate(criteria):
        where = f"criteria[{i}]"
        if not isinstance(c, dict):
            raise CriteriaError(f"{where}: must be an object with name, label and scale")
        name = c.get("name")
        if not isinstance(name, str) or not name or not set(name) <= _NAME_CHARS or len(name) > 40:
            raise CriteriaError(f"{where}.name: use 1–40 lowercase letters, digits or _ (e.g. helpfulness)")
        if any(o.name == name for o in out):
            raise CriteriaError(f"{where}.name: {name!r} is used twice")
        label = c.get("label") or name.replace("_", " ").capitalize()
        description = c.get("description") or ""
        if not isinstance(label, str) or not isinstance(description, str):
            raise CriteriaError(f"{where}: label and description must be text")
        scale = c.get("scale") or ({"min": 1, "max": 5} if kind == "rating" else {"min": 0, "max": 1})
        if not isinstance(scale, dict):
            raise CriteriaError(f"{where}.scale: must be an object like {{\"min\": 1, \"max\": 5}}")
        low, high = scale.get("min"), scale.get("max")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)) or not low < high:
            raise CriteriaError(f"{where}.scale: min and max must be integers with min < max")
        if high - low + 1 > MAX_SCALE_POINTS:
            raise CriteriaError(f"{where}.scale: at most {MAX_SCALE_POINTS} points")
        labels = scale.get("labels") or {}
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise CriteriaError(f"{where}.scale.labels: must map scale points to text")
        for key in labels:
            if not str(key).lstrip("-").isdigit() or not low <= int(key) <= high:
                raise CriteriaError(f"{where}.scale.labels: {key!r} is not a point of the {low}–{high} scale")
        out.append(Criterion(name, label, description, low, high, {str(k): v for k, v in labels.items()}))
    return out


def _common(payload: dict[str, Any], options: PairwiseOptions) -> tuple[str, str, int | None, list[str]]:
    """Rationale, edit, time taken and flags, shared by every kind."""
    rationale = payload.get("rationale") or ""
    if not isinstance(rationale, str):
        raise AnswerError("rationale", "must be text")
    rationale = rationale.strip()
    if len(rationale) > MAX_RATIONALE:
        raise AnswerError("rationale", f"is longer than {MAX_RATIONALE} characters")
    if options.require_rationale and not rationale:
        raise AnswerError("rationale", "is required in this campaign: say briefly why")
    edited = payload.get("edited_response") or ""
    if not isinstance(edited, str):
        raise AnswerError("edited_response", "must be text")
    if edited and not options.allow_editing:
        raise AnswerError("edited_response", "this campaign does not allow editing responses")
    if len(edited) > MAX_EDIT:
        raise AnswerError("edited_response", f"is longer than {MAX_EDIT} characters")
    time_taken = _int_or_none(payload.get("time_taken_ms"), "time_taken_ms")
    if time_taken is not None and not 0 <= time_taken <= MAX_TIME_MS:
        raise AnswerError("time_taken_ms", "must be between 0 and 86,400,000")
    flags = payload.get("flags") or []
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        raise AnswerError("flags", f"must be a list of: {', '.join(FLAG_REASONS)}")
    unknown = [f for f in flags if f not in FLAG_REASONS]
    if unknown:
        raise AnswerError("flags", f"{unknown[0]!r} is not one of {', '.join(FLAG_REASONS)}")
    return rationale, edited, time_taken, sorted(set(flags))


def _response_id(value: Any, field: str, response_ids: Sequence[int]) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise AnswerError(field, "must be a response id")
    if value not in response_ids:
        raise AnswerError(field, f"{value} is not one of this item's responses")
    return value


def validate_answer(
    payload: dict[str, Any],
    *,
    kind: str,
    options: PairwiseOptions,
    response_ids: Sequence[int],
    criteria: Sequence[Criterion] = (),
    shown_as: Mapping[int, str] | None = None,
) -> Answer:
    """Return the cleaned answer for the campaign's kind, or raise AnswerError naming the field.

    The kind's own fields are checked first, then what every kind shares (rationale, edit,
    time, flags), so the first error named is the one about the answer itself. Errors name a
    response as `shown_as` names it (its handle, for an annotator), else by its id.
    """
    if not isinstance(payload, dict):
        raise AnswerError("answer", "must be an object")
    if kind == "pairwise":
        base = validate_pairwise_answer(payload, options=options, response_ids=response_ids)
        outcome, preferred, strength = base.outcome, base.preferred_response_id, base.strength
        extra = _pairwise_criteria(payload, options, response_ids, criteria)
        edit_target = preferred
    elif kind == "ranking":
        outcome, preferred, strength = "ranked", None, None
        extra = {"ranking": _ranking(payload, options, response_ids, shown_as or {})}
        top = extra["ranking"][0]
        edit_target = top[0] if len(top) == 1 else None
    elif kind == "rating":
        outcome, preferred, strength = "rated", None, None
        extra = {"ratings": _ratings(payload, response_ids, criteria, shown_as or {})}
        edit_target = response_ids[0] if len(response_ids) == 1 else None
    else:
        raise AnswerError("kind", f"unknown campaign kind {kind!r}")

    rationale, edited, time_taken, flags = _common(payload, options)
    if edited:
        if edit_target is None:
            raise AnswerError("edited_response", {
                "pairwise": "an edit rewrites the preferred response; choose one first",
                "ranking": "an edit rewrites the top-ranked response; rank one response first",
                "rating": "an edit rewrites a single rated response",
            }[kind])
        extra["edited_response_id"] = edit_target
    if flags:
        extra["flags"] = flags
    return Answer(outcome, preferred, strength, rationale, edited, time_taken, extra)


def _pairwise_criteria(
    payload: dict[str, Any], options: PairwiseOptions, response_ids: Sequence[int], criteria: Sequence[Criterion]
) -> dict[str, Any]:
    if not criteria:
        return {}
    given = payload.get("criteria")
    if not isinstance(given, dict):
        raise AnswerError("criteria", f"give a winner for each of: {', '.join(c.name for c in criteria)}")
    winners: dict[str, Any] = {}
    for c in criteria:
        if c.name not in given:
            raise AnswerError(f"criteria.{c.name}", "is missing: choose a response or tie")
        value = given[c.name]
        if value == "tie":
            if not options.allow_ties:
                raise AnswerError(f"criteria.{c.name}", "this campaign does not allow ties")
            winners[c.name] = "tie"
        else:
            winners[c.name] = _response_id(value, f"criteria.{c.name}", response_ids)
    unknown = sorted(set(given) - {c.name for c in criteria})
    if unknown:
        raise AnswerError(f"criteria.{unknown[0]}", "is not a criterion of this campaign")
    return {"criteria": winners}


def _ranking(
    payload: dict[str, Any], options: PairwiseOptions, response_ids: Sequence[int], names: Mapping[int, str]
) -> list[list[int]]:
    if payload.get("outcome", "ranked") != "ranked":
        raise AnswerError("outcome", "must be 'ranked' in a ranking campaign")
    ranking = payload.get("ranking")
    if not isinstance(ranking, list) or not ranking:
        raise AnswerError("ranking", "must be a list of groups of response ids, best first, e.g. [[3], [1, 2]]")
    seen: set[int] = set()
    groups: list[list[int]] = []
    for g, group in enumerate(ranking):
        if isinstance(group, int | str) and not isinstance(group, bool):
            group = [group]
        if not isinstance(group, list) or not group:
            raise AnswerError(f"ranking[{g}]", "must be a non-empty list of response ids (ties share a group)")
        if len(group) > 1 and not options.allow_ties:
            raise AnswerError(f"ranking[{g}]", "this campaign does not allow ties")
        ids = []
        for rid in group:
            rid = _response_id(rid, f"ranking[{g}]", response_ids)
            if rid in seen:
                raise AnswerError("ranking", f"response {names.get(rid, rid)} appears more than once")
            seen.add(rid)
            ids.append(rid)
        groups.append(ids)
    missing = [rid for rid in response_ids if rid not in seen]
    if missing:
        raise AnswerError("ranking", f"response {names.get(missing[0], missing[0])} is missing: rank every response")
    return groups


def _ratings(
    payload: dict[str, Any], response_ids: Sequence[int], criteria: Sequence[Criterion], names: Mapping[int, str]
) -> dict[str, dict[str, int]]:
    if payload.get("outcome", "rated") != "rated":
        raise AnswerError("outcome", "must be 'rated' in a rating campaign")
    ratings = payload.get("ratings")
    if not isinstance(ratings, dict):
        raise AnswerError("ratings", 'must map each response id to its scores, e.g. {"12": {"helpfulness": 4}}')
    cleaned: dict[str, dict[str, int]] = {}
    for key, scores in ratings.items():
        rid = _response_id(key, "ratings", response_ids)
        shown = names.get(rid, rid)
        if not isinstance(scores, dict):
            raise AnswerError(f"ratings.{shown}", "must map each criterion to a score")
        row: dict[str, int] = {}
        for c in criteria:
            if c.name not in scores:
                raise AnswerError(f"ratings.{shown}.{c.name}", "is missing: rate every criterion")
            score = scores[c.name]
            if isinstance(score, bool) or not isinstance(score, int) or not c.low <= score <= c.high:
                raise AnswerError(f"ratings.{shown}.{c.name}", f"must be an integer from {c.low} to {c.high}, not {score!r}")
            row[c.name] = score
        unknown = sorted(set(scores) - {c.name for c in criteria})
        if unknown:
            raise AnswerError(f"ratings.{shown}.{unknown[0]}", "is not a criterion of this campaign")
        cleaned[str(rid)] = row
    missing = [rid for rid in response_ids if str(rid) not in cleaned]
    if missing:
        raise AnswerError("ratings", f"response {names.get(missing[0], missing[0])} is missing: rate every response")
    return cleaned
