"""Opaque per-assignment handles for the responses an annotator is shown. No Django here.

Response ids are given out in import order, and importers write the chosen (or first) reply
first, so the lower id is usually the better reply. An annotator who saw ids could learn that.
What an annotator receives therefore names each response by a handle instead: a keyed hash of
(assignment, response) (BLAKE2b, keyed by a key derived from the installation's secret) that
carries no order and differs from one assignment to the next. No handle is stored: submit
recomputes them from the assignment's display order.

`answer_from_handles` turns an answer given in handles into the same answer given in response
ids, refusing any value that is not a handle of this assignment with an error naming the field.
`answer_to_handles` is its inverse, for showing a stored answer back to its annotator.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any

from annotation.core.judging import AnswerError

HANDLE_CHARS = 16  # hex: 64 bits, collision-free within an item of at most a few responses
_PURPOSE = b"arbiter.response-handle"
NOT_SHOWN = "is not a response of this item (send the ids `next` gave)"
_FULL = 64  # hex characters of the whole 32-byte digest


def handle_key(secret: str | bytes) -> bytes:
    """Return the key for response handles, derived from the installation's secret."""
    secret = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(secret, _PURPOSE, hashlib.sha256).digest()


def _digest(key: bytes, scope: str, response_id: int) -> str:
    # Keyed BLAKE2b is a MAC in its own right (RFC 7693), and three times faster here than HMAC.
    return hashlib.blake2b(f"{scope}:{response_id}".encode(), key=key, digest_size=32).hexdigest()


def response_handles(
    key: bytes, scope: int | str, response_ids: Iterable[int], *, width: int = HANDLE_CHARS
) -> dict[int, str]:
    """Return {response id: handle} for the responses shown in one assignment (`scope`).

    Handles are the first `width` characters of the keyed hash; should two responses of the
    item share them, every handle of that item is lengthened by `width` until they differ (the
    same ids always give the same handles, so submit finds the ones `next` gave). The whole
    hash (64 characters) of two different responses does not agree in practice.
    """
    full = {rid: _digest(key, str(scope), rid) for rid in response_ids}
    size = width
    while True:
        handles = {rid: digest[:size] for rid, digest in full.items()}
        if len(set(handles.values())) == len(handles):
            return handles
        if size >= _FULL:
            raise ValueError(f"response handles collide in full for {scope}")  # BLAKE2b collided
        size += width


def _to_id(value: Any, field: str, ids: Mapping[str, int]) -> int:
    if isinstance(value, str) and value in ids:
        return ids[value]
    raise AnswerError(field, NOT_SHOWN)


def answer_from_handles(payload: Any, handles: Mapping[int, str]) -> Any:
    """Return the answer with every response named by its id instead of its handle.

    `handles` is `response_handles` of the assignment. Maps `preferred_response_id`, the
    winners of `criteria`, the groups of `ranking` and the keys of `ratings`; a value that is
    not one of this assignment's handles (a raw response id, another assignment's handle)
    raises AnswerError naming the field. Shapes that are wrong in other ways are left as they
    are, for `validate_answer` to name.
    """
    if not isinstance(payload, dict):
        return payload
    ids = {handle: rid for rid, handle in handles.items()}
    out = dict(payload)
    preferred = payload.get("preferred_response_id")
    if preferred not in (None, ""):
        out["preferred_response_id"] = _to_id(preferred, "preferred_response_id", ids)
    criteria = payload.get("criteria")
    if isinstance(criteria, dict):
        out["criteria"] = {
            name: value if value == "tie" else _to_id(value, f"criteria.{name}", ids)
            for name, value in criteria.items()
        }
    ranking = payload.get("ranking")
    if isinstance(ranking, list):
        groups: list[Any] = []
        for g, group in enumerate(ranking):
            if isinstance(group, list):
                groups.append([_to_id(h, f"ranking[{g}]", ids) for h in group])
            elif isinstance(group, str):
                groups.append(_to_id(group, f"ranking[{g}]", ids))
            else:
                groups.append(group)
        out["ranking"] = groups
    ratings = payload.get("ratings")
    if isinstance(ratings, dict):
        out["ratings"] = {str(_to_id(key, "ratings", ids)): scores for key, scores in ratings.items()}
    return out


def answer_to_handles(answer: Mapping[str, Any], handles: Mapping[int, str]) -> dict[str, Any]:
    """Return a stored answer (`Judgment.answer`) with its response ids replaced by handles."""

    def name(rid: Any) -> Any:
        return handles.get(int(rid), rid) if isinstance(rid, int | str) and str(rid).isdigit() else rid

    out = dict(answer)
    if isinstance(answer.get("criteria"), dict):
        out["criteria"] = {k: v if v == "tie" else name(v) for k, v in answer["criteria"].items()}
    if isinstance(answer.get("ranking"), list):
        out["ranking"] = [[name(rid) for rid in group] for group in answer["ranking"]]
    if isinstance(answer.get("ratings"), dict):
        out["ratings"] = {name(k): v for k, v in answer["ratings"].items()}
    if "edited_response_id" in answer:
        out["edited_response_id"] = name(answer["edited_response_id"])
    return out
