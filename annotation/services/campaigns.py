"""Campaigns: create, edit, lifecycle, new versions, and closing into a dataset.

Lifecycle: draft -> active <-> paused -> closed (a draft may also be closed). Only an active
campaign is served (`serving.assignment_lease_next` refuses the others).

The schema — kind, criteria and the answer options — decides what a valid judgment is. It can
change only while the campaign has no judgments; after that `campaign_new_version` starts a new
campaign (parent = this one, version + 1) with the new schema, and closes this one, so every
judgment is read under the schema it was made with. The other settings (name, instructions,
overlap up, lease time, gold rate) stay editable, each change with an audit entry.
"""

import random
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, F, Max, Q

from annotation import events, hooks
from annotation.core.judging import CriteriaError, validate_criteria
from annotation.errors import ApplicationError, ConflictError, ForbiddenError, field_error
from annotation.models import (
    COUNTER_SHARDS,
    GOLD_TARGET,
    Campaign,
    CampaignCounter,
    Dataset,
    Item,
    ItemResponse,
    Judgment,
    Membership,
    Prompt,
    Response,
    Role,
)
from annotation.selectors import membership_role, user_role
from annotation.services.audit import audit_changes, audit_record
from annotation.services.imports import RESPONSES_PER_ITEM

# Which campaign roles a user may hold, given their global role.
_ALLOWED_MEMBERSHIP = {
    Role.MANAGER: {Role.MANAGER, Role.ANNOTATOR, Role.RESEARCHER},
    Role.ANNOTATOR: {Role.ANNOTATOR},
    Role.RESEARCHER: {Role.RESEARCHER},
}

# Allowed status changes: draft -> active -> paused <-> active -> closed.
_TRANSITIONS = {
    Campaign.Status.DRAFT: {Campaign.Status.ACTIVE, Campaign.Status.CLOSED},
    Campaign.Status.ACTIVE: {Campaign.Status.PAUSED, Campaign.Status.CLOSED},
    Campaign.Status.PAUSED: {Campaign.Status.ACTIVE, Campaign.Status.CLOSED},
    Campaign.Status.CLOSED: set(),
}

# What a judgment is checked against: these change only through a new version once judged.
SCHEMA_FIELDS = ("kind", "criteria", "allow_ties", "allow_both_bad", "use_strength", "require_rationale", "allow_editing")
# Editable at any time before the campaign closes (overlap only upwards once judging started).
SETTINGS_FIELDS = ("name", "instructions", "overlap", "lease_seconds", "gold_rate")

COPY_ITEMS = {
    "unjudged": "Items nobody has judged yet",
    "incomplete": "Items that still need judgments",
    "all": "Every item",
    "none": "No items (import data into the new version)",
}


def _full_clean(obj: Any) -> None:
    try:
        obj.full_clean()
    except ValidationError as exc:
        fields = exc.message_dict
        first = next(iter(fields.items()))
        raise ApplicationError(f"{first[0]}: {' '.join(first[1])}", extra={"fields": fields}) from exc


def _clean_criteria(kind: str, criteria: Any) -> list[dict]:
    try:
        cleaned = validate_criteria(kind, criteria)
    except CriteriaError as exc:
        field = str(exc).split(":", 1)[0].split("[", 1)[0].split(".", 1)[0]
        raise ApplicationError(str(exc), extra={"fields": {field: [str(exc)]}}) from exc
    return [c.as_dict() for c in cleaned]


def _require_manager(campaign: Campaign, actor: AbstractBaseUser | None) -> None:
    if actor is not None and membership_role(user=actor, campaign=campaign) != Role.MANAGER:
        raise ForbiddenError("Only the campaign's managers can do this.")


def campaign_schema(campaign: Campaign) -> dict[str, Any]:
    """Return the campaign's schema fields as plain values."""
    return {f: getattr(campaign, f) for f in SCHEMA_FIELDS}


def campaign_settings(campaign: Campaign) -> dict[str, Any]:
    """Return the campaign's editable (non-schema) settings as plain values."""
    return {f: getattr(campaign, f) for f in SETTINGS_FIELDS}


@transaction.atomic
def campaign_create(
    *,
    created_by: AbstractBaseUser,
    name: str,
    instructions: str = "",
    kind: str = Campaign.Kind.PAIRWISE,
    criteria: list | None = None,
    overlap: int = 1,
    lease_seconds: int = 600,
    allow_ties: bool = True,
    allow_both_bad: bool = True,
    use_strength: bool = True,
    require_rationale: bool = False,
    allow_editing: bool = False,
    gold_rate: float = 0.0,
    status: str = Campaign.Status.DRAFT,
) -> Campaign:
    """Create a campaign; its creator becomes its first manager."""
    if user_role(created_by) != Role.MANAGER:
        raise ApplicationError("Only managers can create campaigns.")
    campaign = Campaign(
        name=name.strip(),
        instructions=instructions,
        kind=kind,
        criteria=_clean_criteria(kind, criteria),
        overlap=overlap,
        lease_seconds=lease_seconds,
        allow_ties=allow_ties,
        allow_both_bad=allow_both_bad,
        use_strength=use_strength,
        require_rationale=require_rationale,
        allow_editing=allow_editing,
        gold_rate=gold_rate,
        status=status,
        created_by=created_by,
    )
    _full_clean(campaign)
    campaign.save()
    CampaignCounter.objects.bulk_create(CampaignCounter(campaign=campaign, shard=i) for i in range(COUNTER_SHARDS))
    Membership.objects.create(campaign=campaign, user=created_by, role=Role.MANAGER)
    audit_record(
        actor=created_by, campaign=campaign, action="campaign.create", target=f"campaign:{campaign.pk}",
        after={**campaign_settings(campaign), **campaign_schema(campaign), "status": campaign.status},
    )
    return campaign


@transaction.atomic
def campaign_set_status(*, campaign: Campaign, status: str, actor: AbstractBaseUser | None = None) -> Campaign:
    """Move the campaign to `status` if the lifecycle allows it."""
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if status not in Campaign.Status.values:
        raise field_error("status", f"must be one of {', '.join(Campaign.Status.values)}")
    if status == campaign.status:
        return campaign
    if status not in _TRANSITIONS[Campaign.Status(campaign.status)]:
        raise ConflictError(
            f"A {campaign.status} campaign cannot become {status}.",
            extra={"status": campaign.status, "allowed": sorted(_TRANSITIONS[Campaign.Status(campaign.status)])},
        )
    if status == Campaign.Status.ACTIVE and not campaign.items.exists():
        raise ConflictError("Import items before activating the campaign.")
    before = campaign.status
    campaign.status = status
    campaign.save(update_fields=["status", "updated_at"])
    audit_record(
        actor=actor, campaign=campaign, action="campaign.status", target=f"campaign:{campaign.pk}",
        before={"status": before}, after={"status": status},
    )
    if status == Campaign.Status.CLOSED:
        hooks.campaign_closed(campaign_id=campaign.pk)  # its receivers run after commit
    events.campaign_changed(campaign_id=campaign.pk)
    return campaign


def _check_kind_fits_items(campaign: Campaign, kind: str) -> None:
    """Raise naming `kind` when some of the campaign's items have a response count the kind cannot serve."""
    low, high = RESPONSES_PER_ITEM[Campaign.Kind(kind)]
    bad = (
        Item.objects.filter(campaign=campaign)
        .annotate(n=Count("item_responses"))
        .filter(Q(n__lt=low) | Q(n__gt=high))
        .values_list("n", flat=True)
    )
    sizes = sorted(set(bad))
    if sizes:
        need = f"{low}" if low == high else f"{low} to {high}"
        raise field_error(
            "kind", f"{len(bad)} item(s) have {', '.join(map(str, sizes))} responses; a {kind} campaign needs {need}"
        )


def _set_overlap(campaign: Campaign, overlap: int, *, was: int) -> None:
    """Give every regular item the new target and recount the campaign's completion counters."""
    regular = Item.objects.filter(campaign=campaign, is_gold=False)
    if overlap < was:
        busiest = regular.aggregate(m=Max(F("judgment_count") + F("lease_count")))["m"] or 0
        if busiest > overlap:
            raise field_error(
                "overlap",
                f"cannot go down to {overlap}: an item already has {busiest} judgments or open leases "
                f"(the lowest possible now is {busiest})",
            )
    regular.update(target=overlap)
    complete = regular.filter(judgment_count__gte=overlap).count()
    CampaignCounter.objects.filter(campaign=campaign).update(items_complete=0)
    CampaignCounter.objects.filter(campaign=campaign, shard=0).update(items_complete=complete)
    campaign.wanted_judgments = campaign.item_count * overlap


@transaction.atomic
def campaign_update(
    *,
    campaign: Campaign,
    actor: AbstractBaseUser | None,
    name: str | None = None,
    instructions: str | None = None,
    overlap: int | None = None,
    lease_seconds: int | None = None,
    gold_rate: float | None = None,
    kind: str | None = None,
    criteria: list | None = None,
    allow_ties: bool | None = None,
    allow_both_bad: bool | None = None,
    use_strength: bool | None = None,
    require_rationale: bool | None = None,
    allow_editing: bool | None = None,
) -> Campaign:
    """Change the given settings (None leaves one as it is); the schema only while nothing is judged.

    Raising the overlap gives every regular item the new target at once; lowering it is refused
    once an item has more judgments or open leases than the new value.
    """
    _require_manager(campaign, actor)
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if campaign.status == Campaign.Status.CLOSED:
        raise ConflictError("This campaign is closed; its settings no longer change.")
    given = {
        "name": name.strip() if isinstance(name, str) else None, "instructions": instructions, "overlap": overlap,
        "lease_seconds": lease_seconds, "gold_rate": gold_rate, "kind": kind, "criteria": criteria,
        "allow_ties": allow_ties, "allow_both_bad": allow_both_bad, "use_strength": use_strength,
        "require_rationale": require_rationale, "allow_editing": allow_editing,
    }
    new = {k: v for k, v in given.items() if v is not None}
    if "kind" in new or "criteria" in new:
        new["criteria"] = _clean_criteria(new.get("kind", campaign.kind), new.get("criteria", campaign.criteria))
    old = {**campaign_settings(campaign), **campaign_schema(campaign)}
    before, after = audit_changes(old, new)
    if not after:
        return campaign
    schema_changed = sorted(set(after) & set(SCHEMA_FIELDS))
    if schema_changed:
        judged = Judgment.objects.filter(campaign=campaign).count()
        if judged:
            message = "cannot change once judgments exist"
            raise ConflictError(
                f"{', '.join(schema_changed)}: {message} ({judged} so far); create a new version of the "
                "campaign to change the schema.",
                extra={"fields": {f: [message] for f in schema_changed}, "judgments": judged},
            )
        if "kind" in after:
            _check_kind_fits_items(campaign, after["kind"])
    for field, value in after.items():
        setattr(campaign, field, value)
    _full_clean(campaign)
    if "overlap" in after:
        _set_overlap(campaign, after["overlap"], was=before["overlap"])
    campaign.save()
    audit_record(
        actor=actor, campaign=campaign, action="campaign.settings", target=f"campaign:{campaign.pk}",
        before=before, after=after,
    )
    events.campaign_changed(campaign_id=campaign.pk)
    return campaign


@transaction.atomic
def membership_add(
    *,
    campaign: Campaign,
    user: AbstractBaseUser,
    role: str,
    cap: int | None = None,
    actor: AbstractBaseUser | None = None,
) -> Membership:
    """Add the user to the campaign with `role`, or change their role if already a member."""
    if role not in Role.values:
        raise field_error("role", f"must be one of {', '.join(Role.values)}")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise field_error("cap", "must be a whole number of judgments, 1 or more, or empty for no cap")
    global_role = user_role(user)
    if global_role is None or role not in _ALLOWED_MEMBERSHIP[Role(global_role)]:
        raise field_error(
            "role", f"{user.get_username()} is a {global_role or 'user without a role'} and cannot be a {role} here"
        )
    existing = Membership.objects.filter(campaign=campaign, user=user).first()
    before = {"role": existing.role, "cap": existing.cap} if existing else None
    membership, _ = Membership.objects.update_or_create(
        campaign=campaign, user=user, defaults={"role": role, "cap": cap}
    )
    audit_record(
        actor=actor, campaign=campaign, action="membership.add" if existing is None else "membership.role",
        target=f"user:{user.get_username()}", before=before, after={"role": role, "cap": cap},
    )
    return membership


# --- new versions -----------------------------------------------------------------------------------


def _copy_chunk(chunk: list[Item], new: Campaign, rng: random.Random) -> int:
    """Copy one chunk of items (prompt, responses, links, gold answer remapped) into `new`; return the regular ones."""
    links: dict[int, list[tuple[int, Response]]] = {}
    for link in ItemResponse.objects.filter(item__in=chunk).select_related("response").order_by("item_id", "position"):
        links.setdefault(link.item_id, []).append((link.position, link.response))
    prompts = Prompt.objects.bulk_create(
        [Prompt(campaign=new, external_id=i.prompt.external_id, messages=i.prompt.messages,
                metadata=i.prompt.metadata) for i in chunk]
    )
    responses = Response.objects.bulk_create(
        [Response(prompt=p, content=r.content, model_name=r.model_name, metadata=r.metadata)
         for p, i in zip(prompts, chunk, strict=True) for _, r in links.get(i.pk, [])]
    )
    new_items, new_links, cursor = [], [], 0
    for p, i in zip(prompts, chunk, strict=True):
        old_links = links.get(i.pk, [])
        mine = responses[cursor : cursor + len(old_links)]
        cursor += len(old_links)
        id_map = {r.pk: m.pk for (_, r), m in zip(old_links, mine, strict=True)}
        gold = dict(i.gold) if i.gold else None
        if gold and gold.get("preferred_response_id") in id_map:
            gold["preferred_response_id"] = id_map[gold["preferred_response_id"]]
        new_items.append(Item(campaign=new, prompt=p, priority=i.priority, gold=gold, is_gold=i.is_gold,
                              content_hash=i.content_hash,
                              target=GOLD_TARGET if i.is_gold else new.overlap, random_key=rng.random()))
        new_links.append([(pos, m) for (pos, _), m in zip(old_links, mine, strict=True)])
    Item.objects.bulk_create(new_items)
    ItemResponse.objects.bulk_create(
        [ItemResponse(item=item, response=m, position=pos)
         for item, pairs in zip(new_items, new_links, strict=True) for pos, m in pairs]
    )
    return sum(1 for i in chunk if not i.is_gold)


def _copy_items(old: Campaign, new: Campaign, mode: str) -> int:
    """Copy the chosen items of `old` (prompts, responses, gold answers) into `new`; return the regular ones.

    Gold checks are always copied (unless `mode` is "none"): they test annotators, they are not work.
    """
    if mode == "none":
        return 0
    regular = Q(is_gold=False)
    if mode == "unjudged":
        regular &= Q(judgment_count=0)
    elif mode == "incomplete":
        regular &= Q(judgment_count__lt=F("target"))
    items = Item.objects.filter(campaign=old).filter(regular | Q(is_gold=True)).select_related("prompt").order_by("pk")
    rng = random.Random()
    n_regular, last = 0, 0
    # By pages of ids, so a large campaign is copied in bounded memory.
    while chunk := list(items.filter(pk__gt=last)[:1000]):
        n_regular += _copy_chunk(chunk, new, rng)
        last = chunk[-1].pk
    return n_regular


@transaction.atomic
def campaign_new_version(
    *,
    campaign: Campaign,
    actor: AbstractBaseUser,
    copy_items: str = "unjudged",
    name: str | None = None,
    instructions: str | None = None,
    overlap: int | None = None,
    lease_seconds: int | None = None,
    gold_rate: float | None = None,
    kind: str | None = None,
    criteria: list | None = None,
    allow_ties: bool | None = None,
    allow_both_bad: bool | None = None,
    use_strength: bool | None = None,
    require_rationale: bool | None = None,
    allow_editing: bool | None = None,
) -> Campaign:
    """Start the next version of the campaign with the given changes, and close this one.

    The new campaign (parent = this one, version + 1, same round) copies every setting not given,
    every member (role, cap, paused, excluded) and the items chosen by `copy_items`: "unjudged"
    (default: the work nobody has started, judged items keep their judgments here), "incomplete",
    "all" or "none"; gold checks come along with any of them but "none". Invite links stay with
    this campaign, which is closed. The new version starts in this one's status (active or
    paused) when it has items, else as a draft.
    """
    _require_manager(campaign, actor)
    if copy_items not in COPY_ITEMS:
        raise field_error("copy_items", f"must be one of {', '.join(COPY_ITEMS)}")
    old = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if old.status == Campaign.Status.CLOSED:
        raise ConflictError("This campaign is closed; create a new campaign instead of a new version.")
    changes = {
        "name": name, "instructions": instructions, "overlap": overlap, "lease_seconds": lease_seconds,
        "gold_rate": gold_rate, "kind": kind, "criteria": criteria, "allow_ties": allow_ties,
        "allow_both_bad": allow_both_bad, "use_strength": use_strength, "require_rationale": require_rationale,
        "allow_editing": allow_editing,
    }
    settings = {**campaign_settings(old), **campaign_schema(old)}
    settings.update({k: v for k, v in changes.items() if v is not None})
    new = campaign_create(created_by=actor, **settings)
    new.parent, new.version, new.round_number = old, old.version + 1, old.round_number
    if settings["kind"] != old.kind and copy_items != "none":
        _check_kind_fits_items(old, settings["kind"])
    for m in Membership.objects.filter(campaign=old).exclude(user=actor):
        Membership.objects.create(campaign=new, user_id=m.user_id, role=m.role, cap=m.cap, is_active=m.is_active,
                                  excluded=m.excluded)
    mine = Membership.objects.filter(campaign=old, user=actor).first()
    if mine is not None and mine.excluded:
        Membership.objects.filter(campaign=new, user=actor).update(excluded=True)
    copied = _copy_items(old, new, copy_items)
    new.item_count, new.wanted_judgments = copied, copied * new.overlap
    if old.status in (Campaign.Status.ACTIVE, Campaign.Status.PAUSED) and new.items.exists():
        new.status = old.status
    new.save()
    before, after = audit_changes({**campaign_settings(old), **campaign_schema(old)},
                                  {**campaign_settings(new), **campaign_schema(new)})
    details = {"copy_items": copy_items, "items_copied": copied, "status": new.status}
    audit_record(actor=actor, campaign=old, action="campaign.new_version", target=f"campaign:{new.pk}",
                 before={"version": old.version, **before}, after={"version": new.version, **after, **details})
    audit_record(actor=actor, campaign=new, action="campaign.new_version", target=f"campaign:{old.pk}",
                 before={"version": old.version, **before}, after={"version": new.version, **after, **details})
    campaign_set_status(campaign=old, status=Campaign.Status.CLOSED, actor=actor)
    return new


# --- closing into a dataset -------------------------------------------------------------------------


@transaction.atomic
def campaign_close_into_dataset(
    *,
    campaign: Campaign,
    actor: AbstractBaseUser,
    method: str = Dataset.Method.DAWID_SKENE,
    params: dict | None = None,
) -> Dataset:
    """Close the campaign and snapshot its judgments as its next dataset version, in one step.

    Refused (and the campaign left as it is) when there is nothing to aggregate yet or the
    parameters are wrong; the dataset is built in the background after commit.
    """
    from annotation.services.datasets import dataset_create

    _require_manager(campaign, actor)
    if not Judgment.objects.filter(campaign=campaign, item__is_gold=False).exists():
        raise ConflictError("There are no judgments to aggregate yet; the campaign was left as it is.")
    campaign = campaign_set_status(campaign=campaign, status=Campaign.Status.CLOSED, actor=actor)
    dataset = dataset_create(campaign=campaign, method=method, params=params, created_by=actor)
    audit_record(
        actor=actor, campaign=campaign, action="campaign.close_into_dataset", target=f"dataset:{dataset.pk}",
        after={"status": campaign.status, "dataset_version": dataset.version, "method": dataset.method},
    )
    return dataset

