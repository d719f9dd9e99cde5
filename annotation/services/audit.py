"""The audit log: one entry per manager action, written in the same transaction as the action.

Every manager-facing service calls `audit_record`, so an action that rolls back leaves no entry
and an entry never describes something that did not happen. Values are stored as JSON: the
fields that changed, before and after.
"""

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from annotation import events
from annotation.models import AuditEntry, Campaign


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def audit_record(
    *,
    actor: AbstractBaseUser | AnonymousUser | None,
    campaign: Campaign | None,
    action: str,
    target: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEntry:
    """Record that `actor` did `action` to `target` in `campaign`, with the values before and after.

    `actor` is None for actions taken by the system or a command-line script. Open dashboards
    are told after commit: a manager action (a pause, an exclusion) changes what they show.
    """
    if campaign is not None:
        events.campaign_changed(campaign_id=campaign.pk)
    return AuditEntry.objects.create(
        campaign=campaign,
        actor=actor if actor is not None and actor.is_authenticated else None,
        action=action,
        target=target[:200],
        before=_jsonable(before) if before is not None else None,
        after=_jsonable(after) if after is not None else None,
    )


def audit_changes(old: dict[str, Any], new: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (before, after) holding only the keys whose values differ."""
    changed = [k for k in new if old.get(k) != new[k]]
    return {k: old.get(k) for k in changed}, {k: new[k] for k in changed}


def audit_list_for_campaign(*, campaign: Campaign) -> QuerySet[AuditEntry]:
    """Return the campaign's audit entries, newest first (the caller has authorized the campaign)."""
    return AuditEntry.objects.filter(campaign=campaign).select_related("actor").order_by("-created_at", "-id")
