"""What a valid answer is, given a campaign's kind and options. No Django here.

`validate_pairwise_answer` returns the cleaned answer or raises AnswerError naming the field.
"""

from __future__ import annotations

from collections.abc import Sequence
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
class PairwiseAnswer:
    outcome: str
    preferred_response_id: int | None
    strength: int | None
    rationale: str
    edited_response: str
    time_taken_ms: int | None


def _int_or_none(value: Any, field: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise AnswerError(field, "must be an integer")
    return value


def validate_pairwise_answer(
    payload: dict[str, Any], *, options: PairwiseOptions, response_ids: Sequence[int]
) -> PairwiseAnswer:
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
    if edited and outcome != "preferred":
        raise AnswerError("edited_response", "an edit rewrites the preferred response; choose one first")
    if len(edited) > MAX_EDIT:
        raise AnswerError("edited_response", f"is longer than {MAX_EDIT} characters")

    time_taken = _int_or_none(payload.get("time_taken_ms"), "time_taken_ms")
    if time_taken is not None and not 0 <= time_taken <= MAX_TIME_MS:
        raise AnswerError("time_taken_ms", "must be between 0 and 86,400,000")

    return PairwiseAnswer(
        outcome=outcome,
        preferred_response_id=preferred if outcome == "preferred" else None,
        strength=strength if outcome == "preferred" else None,
        rationale=rationale,
        edited_response=edited,
        time_taken_ms=time_taken,
    )
