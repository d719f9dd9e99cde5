"""People in a campaign: members (add, cap, pause, exclude, remove) and invite links.

A paused member is served nothing and cannot submit; their open leases go back to the pool at
once. An excluded member's judgments stay stored but are left out of every aggregation
(`annotation.services.datasets`) until they are included again. Every change is audited.
"""

import secrets
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from annotation import events
from annotation.errors import (
    ApplicationError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    field_error,
)
from annotation.models import Assignment, Campaign, Invite, Item, Membership, Role
from annotation.selectors import user_role
from annotation.services.audit import audit_record
from annotation.services.campaigns import _ALLOWED_MEMBERSHIP, membership_add

MAX_INVITE_DAYS = 90


class InviteRefused(ApplicationError):
    """The invite link can no longer be used (expired, revoked, used up, or its campaign closed)."""

    status_code = 410


def _target(membership: Membership) -> str:
    return f"user:{membership.user.get_username()}"


def _check_cap(cap: int | None) -> None:
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise field_error("cap", "must be a whole number of judgments, 1 or more, or empty for no cap")


def _release_leases(campaign_id: int, user_id: int) -> int:
    """Give the member's open leases back to the pool; return how many."""
    released = 0
    leases = Assignment.objects.filter(campaign_id=campaign_id, annotator_id=user_id, status=Assignment.Status.LEASED)
    for assignment_id, item_id in leases.values_list("pk", "item_id"):
        # The conditional update makes a concurrent expiry of the same lease a no-op here.
        if Assignment.objects.filter(pk=assignment_id, status=Assignment.Status.LEASED).update(
            status=Assignment.Status.EXPIRED
        ):
            Item.objects.filter(pk=item_id).update(lease_count=F("lease_count") - 1)
            released += 1
    if released:
        events.campaign_changed(campaign_id=campaign_id)
    return released


# --- reads ------------------------------------------------------------------------------------------


def membership_list(*, campaign: Campaign) -> QuerySet[Membership]:
    """Return the campaign's members with their users, by role, then by username."""
    return (
        Membership.objects.filter(campaign=campaign)
        .select_related("user")
        .order_by("role", "user__username")
    )


def membership_get(*, campaign: Campaign, user_id: int, lock: bool = False) -> Membership:
    """Return the member of the campaign with this user id, or raise "not found"."""
    qs = Membership.objects.select_related("user", "campaign").filter(campaign=campaign, user_id=user_id)
    membership = (qs.select_for_update(of=("self",)) if lock else qs).first()
    if membership is None:
        raise NotFoundError("This person is not a member of the campaign.", extra={"user_id": user_id})
    return membership


def invite_list(*, campaign: Campaign) -> QuerySet[Invite]:
    """Return the campaign's invite links, newest first."""
    return Invite.objects.filter(campaign=campaign).select_related("created_by").order_by("-created_at", "-id")


def invite_state(invite: Invite, *, now: datetime | None = None) -> str:
    """Return "revoked", "expired", "used up" or "active"."""
    now = now or timezone.now()
    if invite.revoked_at is not None:
        return "revoked"
    if invite.expires_at <= now:
        return "expired"
    if invite.max_uses is not None and invite.uses >= invite.max_uses:
        return "used up"
    return "active"


# --- members ----------------------------------------------------------------------------------------


@transaction.atomic
def membership_add_by_username(
    *, campaign: Campaign, actor: AbstractBaseUser, username: str, role: str = Role.ANNOTATOR, cap: int | None = None
) -> Membership:
    """Add the active user called `username` to the campaign (or change their role and cap)."""
    username = (username or "").strip()
    if not username:
        raise field_error("username", "is required")
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise field_error("username", f"no active user called {username!r}")
    _check_cap(cap)
    return membership_add(campaign=campaign, user=user, role=role, cap=cap, actor=actor)


@transaction.atomic
def membership_set_active(*, membership: Membership, actor: AbstractBaseUser, active: bool) -> Membership:
    """Pause (served nothing, open leases released) or resume the member."""
    membership = membership_get(campaign=membership.campaign, user_id=membership.user_id, lock=True)
    if membership.is_active == active:
        return membership
    membership.is_active = active
    membership.save(update_fields=["is_active"])
    released = 0 if active else _release_leases(membership.campaign_id, membership.user_id)
    audit_record(
        actor=actor, campaign=membership.campaign, action="membership.resume" if active else "membership.pause",
        target=_target(membership), before={"is_active": not active},
        after={"is_active": active, **({"leases_released": released} if released else {})},
    )
    return membership


@transaction.atomic
def membership_set_cap(*, membership: Membership, actor: AbstractBaseUser, cap: int | None) -> Membership:
    """Set the most judgments the member may make here (None: no cap)."""
    _check_cap(cap)
    membership = membership_get(campaign=membership.campaign, user_id=membership.user_id, lock=True)
    if membership.cap == cap:
        return membership
    before = membership.cap
    membership.cap = cap
    membership.save(update_fields=["cap"])
    audit_record(actor=actor, campaign=membership.campaign, action="membership.cap", target=_target(membership),
                 before={"cap": before}, after={"cap": cap, "judged": membership.judged})
    return membership


@transaction.atomic
def membership_set_excluded(*, membership: Membership, actor: AbstractBaseUser, excluded: bool) -> Membership:
    """Leave the member's judgments out of aggregation (or count them again); nothing is deleted."""
    membership = membership_get(campaign=membership.campaign, user_id=membership.user_id, lock=True)
    if membership.excluded == excluded:
        return membership
    membership.excluded = excluded
    membership.save(update_fields=["excluded"])
    audit_record(
        actor=actor, campaign=membership.campaign, action="membership.exclude" if excluded else "membership.include",
        target=_target(membership), before={"excluded": not excluded},
        after={"excluded": excluded, "judgments": membership.judged},
    )
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor: AbstractBaseUser) -> None:
    """Remove the member from the campaign; their judgments stay and still count.

    Refused for the last manager, and for a member whose judgments are excluded (removing them
    would count those judgments again: keep them paused instead).
    """
    membership = membership_get(campaign=membership.campaign, user_id=membership.user_id, lock=True)
    name = membership.user.get_username()
    if membership.role == Role.MANAGER and not (
        Membership.objects.filter(campaign=membership.campaign, role=Role.MANAGER).exclude(pk=membership.pk).exists()
    ):
        raise ConflictError(f"{name} is the campaign's only manager; add another manager before removing them.")
    if membership.excluded:
        raise ConflictError(
            f"{name}'s judgments are excluded from aggregation; removing {name} would count them again. "
            f"Pause {name} instead, or include the judgments first."
        )
    released = _release_leases(membership.campaign_id, membership.user_id)
    before = {"role": membership.role, "cap": membership.cap, "is_active": membership.is_active,
              "judged": membership.judged}
    membership.delete()
    audit_record(actor=actor, campaign=membership.campaign, action="membership.remove", target=f"user:{name}",
                 before=before, after={"leases_released": released} if released else None)


# --- invites ----------------------------------------------------------------------------------------


@transaction.atomic
def invite_create(
    *,
    campaign: Campaign,
    actor: AbstractBaseUser,
    expires_at: datetime,
    role: str = Role.ANNOTATOR,
    cap: int | None = None,
    max_uses: int | None = None,
) -> Invite:
    """Create an invite link to the campaign that works until `expires_at` (at most 90 days ahead)."""
    if role not in Role.values:
        raise field_error("role", f"must be one of {', '.join(Role.values)}")
    _check_cap(cap)
    if max_uses is not None and (isinstance(max_uses, bool) or not isinstance(max_uses, int) or max_uses < 1):
        raise field_error("max_uses", "must be 1 or more, or empty for no limit")
    now = timezone.now()
    if expires_at <= now:
        raise field_error("expires_at", "must be in the future")
    if expires_at > now + timedelta(days=MAX_INVITE_DAYS):
        raise field_error("expires_at", f"can be at most {MAX_INVITE_DAYS} days ahead")
    if campaign.status == Campaign.Status.CLOSED:
        raise ConflictError("This campaign is closed; it takes no new members.")
    invite = Invite.objects.create(
        campaign=campaign, token=secrets.token_urlsafe(24), role=role, cap=cap, max_uses=max_uses,
        expires_at=expires_at, created_by=actor,
    )
    audit_record(actor=actor, campaign=campaign, action="invite.create", target=f"invite:{invite.pk}",
                 after={"role": role, "cap": cap, "max_uses": max_uses, "expires_at": expires_at})
    return invite


def invite_get(*, campaign: Campaign, invite_id: int) -> Invite:
    """Return the campaign's invite with this id, or raise "not found"."""
    invite = Invite.objects.filter(campaign=campaign, pk=invite_id).first()
    if invite is None:
        raise NotFoundError("This invite link does not exist in the campaign.", extra={"invite_id": invite_id})
    return invite


@transaction.atomic
def invite_revoke(*, invite: Invite, actor: AbstractBaseUser) -> Invite:
    """Make the invite link stop working at once (members who joined by it stay)."""
    invite = Invite.objects.select_for_update().select_related("campaign").get(pk=invite.pk)
    if invite.revoked_at is not None:
        return invite
    invite.revoked_at = timezone.now()
    invite.save(update_fields=["revoked_at"])
    audit_record(actor=actor, campaign=invite.campaign, action="invite.revoke", target=f"invite:{invite.pk}",
                 before={"state": "active"}, after={"state": "revoked", "uses": invite.uses})
    return invite


@transaction.atomic
def invite_accept(*, token: str, user: AbstractBaseUser) -> tuple[Membership, bool]:
    """Make the signed-in user a member of the invite's campaign; return (membership, joined now).

    A user who is already a member keeps their membership as it is and uses nothing up.
    """
    invite = Invite.objects.select_for_update().select_related("campaign").filter(token=token or "").first()
    if invite is None:
        raise NotFoundError(
            "This invite link is not valid. Check that the whole link was copied, or ask the campaign's "
            "manager for a new one."
        )
    campaign = invite.campaign
    existing = Membership.objects.filter(campaign=campaign, user=user).first()
    if existing is not None:
        return existing, False
    state = invite_state(invite)
    if state == "revoked":
        raise InviteRefused("This invite link was revoked by the campaign's manager. Ask them for a new one.")
    if state == "expired":
        raise InviteRefused(
            f"This invite link expired on {timezone.localtime(invite.expires_at):%Y-%m-%d %H:%M}. "
            "Ask the campaign's manager for a new one."
        )
    if state == "used up":
        raise InviteRefused(
            f"This invite link has been used {invite.uses} time(s), as many as it allows. "
            "Ask the campaign's manager for a new one."
        )
    if campaign.status == Campaign.Status.CLOSED:
        raise InviteRefused(f"The campaign “{campaign.name}” is closed; it takes no new members.")
    global_role = user_role(user)
    if global_role is None or invite.role not in _ALLOWED_MEMBERSHIP[Role(global_role)]:
        raise ForbiddenError(
            f"This link invites {invite.role}s, and your account ({global_role or 'no role yet'}) cannot be one. "
            "Ask the campaign's manager or an administrator."
        )
    membership = Membership.objects.create(campaign=campaign, user=user, role=invite.role, cap=invite.cap)
    Invite.objects.filter(pk=invite.pk).update(uses=F("uses") + 1)
    audit_record(actor=user, campaign=campaign, action="invite.accept", target=f"invite:{invite.pk}",
                 after={"user": user.get_username(), "role": invite.role, "cap": invite.cap,
                        "uses": invite.uses + 1})
    return membership, True


_UNSET = object()


@transaction.atomic
def membership_update(
    *, membership: Membership, actor: AbstractBaseUser, is_active: Any = _UNSET, excluded: Any = _UNSET,
    cap: Any = _UNSET,
) -> Membership:
    """Apply the given changes (pause/resume, exclude/include, cap) to a member, each audited."""
    if cap is not _UNSET:
        membership = membership_set_cap(membership=membership, actor=actor, cap=cap)
    if is_active is not _UNSET:
        membership = membership_set_active(membership=membership, actor=actor, active=bool(is_active))
    if excluded is not _UNSET:
        membership = membership_set_excluded(membership=membership, actor=actor, excluded=bool(excluded))
    return membership
