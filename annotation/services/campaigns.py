from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from annotation.errors import ApplicationError, ConflictError, field_error
from annotation.judging import CriteriaError, validate_criteria
from annotation.models import COUNTER_SHARDS, Campaign, CampaignCounter, Membership, Role
from annotation.selectors import user_role

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


def _full_clean(obj: Any) -> None:
    from django.core.exceptions import ValidationError

    try:
        obj.full_clean()
    except ValidationError as exc:
        fields = exc.message_dict
        first = next(iter(fields.items()))
        raise ApplicationError(f"{first[0]}: {' '.join(first[1])}", extra={"fields": fields}) from exc


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
    try:
        cleaned = validate_criteria(kind, criteria)
    except CriteriaError as exc:
        field = str(exc).split(":", 1)[0].split("[", 1)[0].split(".", 1)[0]
        raise ApplicationError(str(exc), extra={"fields": {field: [str(exc)]}}) from exc
    campaign = Campaign(
        name=name.strip(),
        instructions=instructions,
        kind=kind,
        criteria=[c.as_dict() for c in cleaned],
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
    return campaign


@transaction.atomic
def campaign_set_status(*, campaign: Campaign, status: str) -> Campaign:
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
    campaign.status = status
    campaign.save(update_fields=["status", "updated_at"])
    return campaign


@transaction.atomic
def membership_add(
    *, campaign: Campaign, user: AbstractBaseUser, role: str, cap: int | None = None
) -> Membership:
    """Add the user to the campaign with `role`, or change their role if already a member."""
    if role not in Role.values:
        raise field_error("role", f"must be one of {', '.join(Role.values)}")
    global_role = user_role(user)
    if global_role is None or role not in _ALLOWED_MEMBERSHIP[Role(global_role)]:
        raise field_error(
            "role", f"{user.get_username()} is a {global_role or 'user without a role'} and cannot be a {role} here"
        )
    membership, _ = Membership.objects.update_or_create(
        campaign=campaign, user=user, defaults={"role": role, "cap": cap}
    )
    return membership
