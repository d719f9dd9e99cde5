"""The next round of the generate → judge → train loop: a campaign of freshly generated replies.

- `round_request_clean` checks a request from the page or the API (checkpoints under the model
  roots, sampling settings, the selection mode against the campaign's kind) before it is queued.
- `round_queue` records the request and queues the `generate_round` task after commit.
- `round_generate` (the worker's side) samples replies for the campaign's prompts from each
  checkpoint (`training.generation`), scores them for "uncertain" selection, and calls
- `round_create`, which opens the round all or nothing: a new campaign with the source's schema,
  options and members (parent = the source, round_number + 1), the source prompts, every reply
  as a response (model name = the checkpoint's label, never shown to annotators) and items for
  the campaign's kind — pairwise: `pairs_per_prompt` pairs per prompt, chosen at random (seeded)
  or where the reward model is least certain (Bradley–Terry win probability closest to 0.5);
  ranking: one item with every distinct reply; rating: one item per distinct reply.

Every request, round opened and failure is written to the source campaign's audit log, which is
what the "Generate next round" page shows.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from annotation.core.importing import content_hash
from annotation.errors import ApplicationError, ConflictError, ForbiddenError, field_error
from annotation.models import (
    Campaign,
    Item,
    ItemResponse,
    Membership,
    Prompt,
    Response,
    Role,
)
from annotation.selectors import membership_role
from annotation.services.audit import audit_record
from annotation.services.campaigns import campaign_create, campaign_schema, campaign_settings
from training.generation import generate_responses
from training.model_paths import ModelPathError, resolve_model_path

SELECTIONS = {
    "random": "Random pairs (seeded)",
    "uncertain": "Pairs the reward model is least sure about",
}
RANKING_MAX = 9  # responses a ranking item shows (annotation.services.imports.RESPONSES_PER_ITEM)
LIMITS = {  # field: (lowest, highest)
    "k": (1, 16),
    "max_new_tokens": (1, 4096),
    "pairs_per_prompt": (1, 20),
    "batch_size": (1, 512),
    "seed": (0, 2**31 - 1),
    "max_prompts": (1, 1_000_000),
}
MAX_CHECKPOINTS = 8
QUEUED, OPENED, FAILED = "campaign.round_queue", "campaign.round_open", "campaign.round_fail"


class Scorer(Protocol):
    """What "uncertain" selection needs from a reward model (e.g. `training.scoring.RewardScorer`)."""

    def score(self, pairs: Iterable[tuple[Sequence[dict[str, str]], str]]) -> list[float]: ...


@dataclass(frozen=True)
class Candidate:
    """One generated reply to a prompt."""

    model_name: str  # the checkpoint's label
    content: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PromptCandidates:
    """The replies generated for one prompt of the source campaign."""

    prompt_id: int
    candidates: Sequence[Candidate]


@dataclass(frozen=True)
class RoundResult:
    campaign: Campaign
    prompts: int
    responses: int
    items: int
    skipped_prompts: int  # prompts left out: fewer distinct replies than an item needs


@dataclass(frozen=True)
class RoundRequest:
    """A checked request to generate the next round (plain values: it travels to the worker as JSON)."""

    token: str
    checkpoints: list[tuple[str, str]]  # (label, real path)
    k: int
    max_new_tokens: int
    temperature: float
    top_p: float
    selection: str
    reward_model: str | None
    pairs_per_prompt: int
    name: str
    seed: int
    batch_size: int
    max_prompts: int | None
    activate: bool

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoundRequest:
        return cls(**{**data, "checkpoints": [tuple(c) for c in data["checkpoints"]]})


# --- opening a round from generated replies --------------------------------------------------------


def win_probability(r_a: float, r_b: float) -> float:
    """Return the Bradley–Terry probability that a beats b: sigmoid(r_a - r_b), without overflow."""
    d = r_a - r_b
    if d >= 0:
        return 1.0 / (1.0 + math.exp(-d))
    e = math.exp(d)
    return e / (1.0 + e)


def select_pairs(
    n: int,
    *,
    count: int,
    selection: str,
    rng: random.Random,
    rewards: Sequence[float] | None = None,
) -> list[tuple[int, int]]:
    """Choose `count` pairs (i, j), i < j, among `n` replies: at random, or least certain first.

    "uncertain" orders the pairs by |sigmoid(r_i - r_j) - 0.5| (ties by index) and takes the first.
    """
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    count = min(count, len(pairs))
    if selection == "uncertain":
        assert rewards is not None
        return sorted(
            pairs, key=lambda p: (abs(win_probability(rewards[p[0]], rewards[p[1]]) - 0.5), p)
        )[:count]
    return sorted(rng.sample(pairs, count))


@transaction.atomic
def round_create(
    *,
    campaign: Campaign,
    generations: Sequence[PromptCandidates],
    selection: str = "random",
    scorer: Scorer | None = None,
    pairs_per_prompt: int = 1,
    name: str | None = None,
    created_by: AbstractBaseUser,
    seed: int = 0,
    activate: bool = False,
    details: dict[str, Any] | None = None,
) -> RoundResult:
    """Open the campaign's next round from generated replies, all or nothing; return what was made.

    Replies with the same text for a prompt count once. A prompt with fewer distinct replies than
    its items need (2 for a pair or a ranking) is left out and counted in `skipped_prompts`.
    """
    if membership_role(user=created_by, campaign=campaign) != Role.MANAGER:
        raise ForbiddenError("Only the campaign's managers can open its next round.")
    _check_selection(campaign, selection, has_scorer=scorer is not None)
    _check_int("pairs_per_prompt", pairs_per_prompt)
    _check_int("seed", seed)
    title = _round_name(campaign, name)
    prompts = _check_generations(campaign, generations)

    # Distinct replies per prompt; every candidate is stored, items use the first of each text.
    distinct: list[list[int]] = []
    for entry in generations:
        seen: dict[str, int] = {}
        for index, candidate in enumerate(entry.candidates):
            seen.setdefault(candidate.content, index)
        distinct.append(sorted(seen.values()))

    rewards: list[list[float]] | None = None
    if selection == "uncertain":
        rewards = _score(scorer, prompts, generations)  # type: ignore[arg-type]

    rng = random.Random(seed)
    plans: list[
        list[list[int]]
    ] = []  # per prompt: items, each a list of candidate indexes in position order
    for p, entry in enumerate(generations):
        keep = distinct[p]
        if campaign.kind == Campaign.Kind.PAIRWISE:
            chosen = select_pairs(
                len(keep),
                count=pairs_per_prompt,
                selection=selection,
                rng=rng,
                rewards=[rewards[p][i] for i in keep] if rewards is not None else None,
            )
            items = [[keep[a], keep[b]] for a, b in chosen]
        elif campaign.kind == Campaign.Kind.RANKING:
            if len(keep) > RANKING_MAX:
                raise field_error(
                    "generations",
                    f"prompt {entry.prompt_id} has {len(keep)} distinct replies; a ranking item shows 2 to "
                    f"{RANKING_MAX}: generate fewer (checkpoints x K)",
                )
            items = [list(keep)] if len(keep) >= 2 else []
        else:
            items = [[i] for i in keep]
        for responses in items:
            rng.shuffle(responses)  # no checkpoint always in the first position
        plans.append(items)
    skipped = sum(1 for items in plans if not items)
    if skipped == len(plans):
        raise field_error(
            "generations",
            "every prompt's replies are identical, so there is nothing to compare: sample with a temperature "
            "above 0, raise K or choose more checkpoints",
        )

    # One transaction: the campaign, its members, prompts, responses and items, or nothing.
    new = campaign_create(
        created_by=created_by,
        **{**campaign_settings(campaign), **campaign_schema(campaign), "name": title},
    )
    new.parent, new.round_number = campaign, campaign.round_number + 1
    for m in Membership.objects.filter(campaign=campaign).exclude(user=created_by):
        Membership.objects.create(
            campaign=new,
            user_id=m.user_id,
            role=m.role,
            cap=m.cap,
            is_active=m.is_active,
            excluded=m.excluded,
        )
    new_prompts = Prompt.objects.bulk_create(
        [
            Prompt(
                campaign=new,
                external_id=prompts[e.prompt_id].external_id,
                messages=prompts[e.prompt_id].messages,
                metadata={**prompts[e.prompt_id].metadata, "source_prompt_id": e.prompt_id},
            )
            for e in generations
        ]
    )
    responses = Response.objects.bulk_create(
        [
            Response(
                prompt=prompt,
                content=c.content,
                model_name=c.model_name,
                metadata={
                    **c.metadata,
                    **({"reward": rewards[p][i]} if rewards is not None else {}),
                },
            )
            for p, (prompt, entry) in enumerate(zip(new_prompts, generations, strict=True))
            for i, c in enumerate(entry.candidates)
        ]
    )
    offsets, cursor = [], 0
    for entry in generations:
        offsets.append(cursor)
        cursor += len(entry.candidates)
    items, links = [], []
    for p, prompt in enumerate(new_prompts):
        for planned in plans[p]:
            chosen = [responses[offsets[p] + i] for i in planned]
            # The hash an import of the same conversation and replies would give, so a later
            # import into this round finds these items as duplicates.
            digest = content_hash(prompt.messages, [r.content for r in chosen])
            items.append(Item(campaign=new, prompt=prompt, target=new.overlap, random_key=rng.random(),
                              content_hash=digest))
            links.append(chosen)
    Item.objects.bulk_create(items)
    ItemResponse.objects.bulk_create(
        ItemResponse(item=item, response=response, position=position)
        for item, chosen in zip(items, links, strict=True)
        for position, response in enumerate(chosen)
    )
    new.item_count, new.wanted_judgments = len(items), len(items) * new.overlap
    if activate:
        new.status = Campaign.Status.ACTIVE
    new.save()

    summary = {
        "round_number": new.round_number,
        "selection": selection,
        "pairs_per_prompt": pairs_per_prompt,
        "seed": seed,
        "prompts": len(new_prompts),
        "responses": len(responses),
        "items": len(items),
        "skipped_prompts": skipped,
        "status": new.status,
        **(details or {}),
    }
    audit_record(
        actor=created_by,
        campaign=campaign,
        action=OPENED,
        target=f"campaign:{new.pk}",
        after=summary,
    )
    audit_record(
        actor=created_by,
        campaign=new,
        action=OPENED,
        target=f"campaign:{campaign.pk}",
        after=summary,
    )
    return RoundResult(
        campaign=new,
        prompts=len(new_prompts),
        responses=len(responses),
        items=len(items),
        skipped_prompts=skipped,
    )


# --- requests: check, queue, run ---------------------------------------------------------------------


def round_model_roots() -> list[Path]:
    """Return the folders checkpoints may be loaded from: the model roots and the training runs' folder."""
    roots = [Path(r) for r in settings.ARBITER_MODEL_ROOTS]
    training_dir = getattr(settings, "ARBITER_TRAINING_DIR", None)
    if training_dir:
        roots.append(Path(training_dir))
    return roots


def round_request_clean(
    *,
    campaign: Campaign,
    checkpoints: Sequence[str],
    k: int = 2,
    max_new_tokens: int = 256,
    temperature: float = 0.7,
    top_p: float = 1.0,
    selection: str = "random",
    reward_model: str | None = None,
    pairs_per_prompt: int = 1,
    name: str | None = None,
    seed: int = 0,
    batch_size: int = 16,
    max_prompts: int | None = None,
    activate: bool = False,
) -> RoundRequest:
    """Check a round request against the campaign and the model roots; return it with real paths.

    Every error names the field at fault. The paths are resolved here (symlinks and `..` too),
    so a path outside the roots is refused before anything is queued.
    """
    for name_, value in (
        ("k", k),
        ("max_new_tokens", max_new_tokens),
        ("pairs_per_prompt", pairs_per_prompt),
        ("seed", seed),
        ("batch_size", batch_size),
    ):
        _check_int(name_, value)
    if max_prompts is not None:
        _check_int("max_prompts", max_prompts)
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not 0 <= temperature <= 2
    ):
        raise field_error(
            "temperature", "must be a number from 0 (greedy) to 2; 0.7 to 1.0 gives varied replies"
        )
    if isinstance(top_p, bool) or not isinstance(top_p, int | float) or not 0 < top_p <= 1:
        raise field_error("top_p", "must be above 0 and at most 1 (1 turns nucleus sampling off)")
    _check_selection(campaign, selection, has_scorer=bool(reward_model))
    if not Item.objects.filter(campaign=campaign, is_gold=False).exists():
        raise ConflictError(
            "This campaign has no items yet, so there are no prompts to generate replies for."
        )

    roots = round_model_roots()
    if isinstance(checkpoints, str) or not isinstance(checkpoints, Sequence) or not checkpoints:
        raise field_error("checkpoints", "choose at least one checkpoint (a policy model folder)")
    if len(checkpoints) > MAX_CHECKPOINTS:
        raise field_error("checkpoints", f"choose at most {MAX_CHECKPOINTS} checkpoints per round")
    labelled: list[tuple[str, str]] = []
    for path in checkpoints:
        real = _resolve("checkpoints", path, roots)
        if is_reward_model(real):
            raise field_error(
                "checkpoints",
                f"{path} is a reward model (a sequence classifier); choose a policy (a causal LM)",
            )
        label = _label(real, roots)
        if any(label == other or str(real) == p for other, p in labelled):
            raise field_error("checkpoints", f"{path} is chosen twice")
        labelled.append((label, str(real)))
    reward = None
    if selection == "uncertain":
        reward_path = _resolve("reward_model", reward_model, roots)
        if not is_reward_model(reward_path):
            raise field_error(
                "reward_model",
                f"{reward_model} is not a reward model (no sequence-classification head)",
            )
        reward = str(reward_path)

    replies = len(labelled) * k
    if campaign.kind == Campaign.Kind.PAIRWISE and replies < 2:
        raise field_error(
            "k", "a pairwise round needs at least 2 replies per prompt: raise K or add a checkpoint"
        )
    if campaign.kind == Campaign.Kind.RANKING and not 2 <= replies <= RANKING_MAX:
        raise field_error(
            "k", f"a ranking item shows 2 to {RANKING_MAX} replies; checkpoints x K is {replies}"
        )
    if campaign.kind == Campaign.Kind.PAIRWISE and pairs_per_prompt > replies * (replies - 1) // 2:
        raise field_error(
            "pairs_per_prompt",
            f"{replies} replies per prompt make at most {replies * (replies - 1) // 2} pairs",
        )
    return RoundRequest(
        token=uuid.uuid4().hex,
        checkpoints=labelled,
        k=k,
        max_new_tokens=max_new_tokens,
        temperature=float(temperature),
        top_p=float(top_p),
        selection=selection,
        reward_model=reward,
        pairs_per_prompt=pairs_per_prompt,
        name=_round_name(campaign, name),
        seed=seed,
        batch_size=batch_size,
        max_prompts=max_prompts,
        activate=bool(activate),
    )


@transaction.atomic
def round_queue(
    *, campaign: Campaign, request: RoundRequest, created_by: AbstractBaseUser
) -> RoundRequest:
    """Record the request in the campaign's audit log and queue its generation after commit."""
    if membership_role(user=created_by, campaign=campaign) != Role.MANAGER:
        raise ForbiddenError("Only the campaign's managers can open its next round.")
    from training.rounds.tasks import generate_round  # tasks import this module

    audit_record(
        actor=created_by,
        campaign=campaign,
        action=QUEUED,
        target=f"round:{request.token}",
        after=request.to_dict(),
    )
    payload = request.to_dict()
    transaction.on_commit(lambda: generate_round.delay(campaign.pk, created_by.pk, payload))
    return request


def round_source_prompts(
    *, campaign: Campaign, max_prompts: int | None = None, seed: int = 0
) -> list[Prompt]:
    """Return the prompts of the campaign's regular items (not gold checks), one per conversation.

    With `max_prompts`, a seeded random sample of that many, in their original order.
    """
    prompts = list(
        Prompt.objects.filter(campaign=campaign, items__is_gold=False).distinct().order_by("pk")
    )
    unique: dict[str, Prompt] = {}
    for prompt in prompts:
        unique.setdefault(json.dumps(prompt.messages, sort_keys=True), prompt)
    chosen = list(unique.values())
    if max_prompts is not None and len(chosen) > max_prompts:
        chosen = sorted(random.Random(seed).sample(chosen, max_prompts), key=lambda p: p.pk)
    return chosen


def round_generate(
    *,
    campaign: Campaign,
    request: RoundRequest,
    created_by: AbstractBaseUser,
    device: str | None = None,
) -> RoundResult:
    """Sample replies from the request's checkpoints for the campaign's prompts and open the round.

    Runs in the worker. A failure is recorded in the campaign's audit log (so the page shows it)
    and raised again.
    """
    try:
        return _generate(campaign=campaign, request=request, created_by=created_by, device=device)
    except Exception as exc:
        message = (
            exc.message if isinstance(exc, ApplicationError) else f"{type(exc).__name__}: {exc}"
        )
        audit_record(
            actor=created_by,
            campaign=campaign,
            action=FAILED,
            target=f"round:{request.token}",
            after={"error": message},
        )
        raise


def _generate(
    *, campaign: Campaign, request: RoundRequest, created_by: AbstractBaseUser, device: str | None
) -> RoundResult:
    prompts = round_source_prompts(
        campaign=campaign, max_prompts=request.max_prompts, seed=request.seed
    )
    if not prompts:
        raise ConflictError(
            "This campaign has no prompts (outside gold checks) to generate replies for."
        )
    roots = round_model_roots()
    try:
        generations = generate_responses(
            [p.messages for p in prompts],
            request.checkpoints,
            k=request.k,
            max_new_tokens=request.max_new_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            batch_size=request.batch_size,
            seed=request.seed,
            model_roots=roots,
            device=device,
        )
        scorer = None
        if request.selection == "uncertain":
            # Imports torch: only the worker loads it, and only for "uncertain" selection.
            from training.scoring import load_scorer

            scorer = load_scorer(request.reward_model, roots=roots)  # type: ignore[arg-type]
    except ModelPathError as exc:
        raise field_error("checkpoints", str(exc)) from exc
    candidates = [
        PromptCandidates(
            prompt_id=prompt.pk,
            candidates=[
                Candidate(
                    model_name=s.checkpoint,
                    content=s.text,
                    metadata={
                        "checkpoint": s.checkpoint,
                        "sample": s.index,
                        "tokens": s.tokens,
                        "finished": s.finished,
                    },
                )
                for s in generated.samples
            ],
        )
        for prompt, generated in zip(prompts, generations, strict=True)
    ]
    stats = {
        label: {
            "tokens_per_second": round(s.tokens_per_second, 1),
            "new_tokens": s.new_tokens,
            "finished": s.finished,
            "samples": s.samples,
        }
        for label, s in generations.stats.items()
    }
    return round_create(
        campaign=campaign,
        generations=candidates,
        selection=request.selection,
        scorer=scorer,
        pairs_per_prompt=request.pairs_per_prompt,
        name=request.name,
        created_by=created_by,
        seed=request.seed,
        activate=request.activate,
        details={
            "request": request.token,
            "checkpoints": [label for label, _ in request.checkpoints],
            "k": request.k,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "max_new_tokens": request.max_new_tokens,
            "reward_model": request.reward_model,
            "generation": stats,
        },
    )


# --- checks -------------------------------------------------------------------------------------------


def _check_int(name: str, value: Any) -> None:
    low, high = LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise field_error(name, f"must be a whole number from {low} to {high}")


def _check_selection(campaign: Campaign, selection: str, *, has_scorer: bool) -> None:
    if selection not in SELECTIONS:
        raise field_error("selection", f"must be one of {', '.join(SELECTIONS)}")
    if selection == "uncertain":
        if campaign.kind != Campaign.Kind.PAIRWISE:
            raise field_error(
                "selection",
                f"'uncertain' chooses pairs, so it applies to pairwise campaigns; this one is {campaign.kind}",
            )
        if not has_scorer:
            raise field_error(
                "reward_model", "'uncertain' selection needs a reward model to score the replies"
            )


def _round_name(campaign: Campaign, name: str | None) -> str:
    if name is not None and not isinstance(name, str):
        raise field_error("name", "must be text")
    title = (name or "").strip() or f"{campaign.name} — round {campaign.round_number + 1}"
    if len(title) > 200:
        raise field_error("name", f"must be at most 200 characters (it has {len(title)})")
    return title


def _check_generations(
    campaign: Campaign, generations: Sequence[PromptCandidates]
) -> dict[int, Prompt]:
    if isinstance(generations, str) or not isinstance(generations, Sequence) or not generations:
        raise field_error("generations", "give the generated replies of at least one prompt")
    ids = []
    for n, entry in enumerate(generations):
        if not isinstance(entry, PromptCandidates):
            raise field_error(
                "generations", f"entry {n} must be a PromptCandidates, got {type(entry).__name__}"
            )
        if not entry.candidates:
            raise field_error("generations", f"prompt {entry.prompt_id} has no replies")
        for i, c in enumerate(entry.candidates):
            if not isinstance(c, Candidate) or not isinstance(c.content, str):
                raise field_error(
                    "generations",
                    f"prompt {entry.prompt_id}, reply {i}: must be a Candidate with text",
                )
            if "\x00" in c.content:
                raise field_error(
                    "generations",
                    f"prompt {entry.prompt_id}, reply {i}: contains a NUL character, which cannot be stored",
                )
            if (
                not isinstance(c.model_name, str)
                or not c.model_name.strip()
                or len(c.model_name) > 200
            ):
                raise field_error(
                    "generations",
                    f"prompt {entry.prompt_id}, reply {i}: the checkpoint label must be 1 to 200 characters",
                )
        ids.append(entry.prompt_id)
    if len(set(ids)) != len(ids):
        raise field_error("generations", "a prompt appears twice; give each prompt's replies once")
    prompts = Prompt.objects.in_bulk(ids)
    foreign = [i for i in ids if i not in prompts or prompts[i].campaign_id != campaign.pk]
    if foreign:
        raise field_error(
            "generations", f"prompt {foreign[0]} is not a prompt of campaign “{campaign.name}”"
        )
    return prompts


def _score(
    scorer: Scorer, prompts: dict[int, Prompt], generations: Sequence[PromptCandidates]
) -> list[list[float]]:
    flat = [(prompts[e.prompt_id].messages, c.content) for e in generations for c in e.candidates]
    scores = list(scorer.score(flat))
    if len(scores) != len(flat) or not all(
        isinstance(s, int | float) and math.isfinite(s) for s in scores
    ):
        raise ApplicationError(
            f"The reward model returned {len(scores)} scores for {len(flat)} replies, or a score that is not a "
            "finite number; nothing was created."
        )
    out, cursor = [], 0
    for e in generations:
        out.append([float(s) for s in scores[cursor : cursor + len(e.candidates)]])
        cursor += len(e.candidates)
    return out


def _resolve(field_name: str, path: Any, roots: list[Path]) -> Path:
    try:
        return resolve_model_path(path, roots=roots)
    except ModelPathError as exc:
        raise field_error(field_name, str(exc)) from None


def is_reward_model(path: Path) -> bool:
    """Return whether the model folder holds a sequence classifier (a reward model), not a policy."""
    try:
        architectures = json.loads((path / "config.json").read_text()).get("architectures") or []
    except (OSError, ValueError):
        return False
    return bool(architectures) and all(
        a.endswith("ForSequenceClassification") for a in architectures
    )


def _label(path: Path, roots: list[Path]) -> str:
    """Return the checkpoint's label: its path under the root that holds it (e.g. run-12/model)."""
    for root in roots:
        root = root.resolve()
        if path.is_relative_to(root) and path != root:
            return str(path.relative_to(root))[:200]
    return path.name[:200]


__all__ = [
    "Candidate",
    "PromptCandidates",
    "RoundRequest",
    "RoundResult",
    "SELECTIONS",
    "round_create",
    "round_generate",
    "round_queue",
    "round_request_clean",
    "round_source_prompts",
    "select_pairs",
    "is_reward_model",
    "win_probability",
]
