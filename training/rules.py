"""Training rules of a campaign: create, change, switch on and off, delete; each change audited.

A rule starts a reward-model run on a fresh snapshot every N judgments, or when the campaign
closes (the firing itself is `training.services.training_rules_fire`). Every field is checked as
the runs it will start are checked (`training_config_clean`, `training_model_path_clean`), so a
rule that is stored can fire; an error names the field at fault and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Exists

from annotation.errors import ApplicationError, ForbiddenError, field_error
from annotation.models import Campaign, Dataset, Role
from annotation.selectors import membership_role
from annotation.services.audit import audit_changes, audit_record
from training.models import TrainingRule, TrainingRun
from training.selectors import training_judgment_count
from training.services import gpus_clean, training_config_clean, training_model_path_clean


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # a keyword left out of `training_rule_update`: that field keeps its value


def _require_manager(user: AbstractBaseUser, campaign: Campaign) -> None:
    # The rule's runs and snapshots are made in its creator's name, and only managers make those.
    if membership_role(user=user, campaign=campaign) != Role.MANAGER:
        raise ForbiddenError("Only the campaign's managers create and change its training rules.")


def _n_clean(kind: str, n: Any) -> int | None:
    if kind != TrainingRule.Kind.EVERY_N_JUDGMENTS:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise field_error("n", f"must be a whole number of judgments >= 1, got {n!r}")
    return n


def _dataset_params_clean(method: Any, params: Any, overlap: int | None = None) -> dict[str, Any]:
    """Return the aggregation's full parameters, naming this rule's fields in an error."""
    from annotation.services.datasets import dataset_params_clean

    if method not in Dataset.Method.values:
        raise field_error("dataset_method", f"must be one of {', '.join(Dataset.Method.values)}")
    try:
        return dataset_params_clean(method=method, params=params, overlap=overlap)
    except ApplicationError as exc:
        field, _, detail = exc.message.partition(": ")
        raise field_error(f"dataset_{field}", detail) from exc


def training_rules_announce_sync(*, campaign_id: int) -> None:
    """Set the campaign's `announce_judgments` flag exactly while it has an active every-N rule.

    Serving announces a judgment (annotation.hooks) only where the flag is set, and reads it
    in the statement that locks the assignment; run this in the transaction that changes a
    rule's kind, activity or existence.
    """
    every_n = TrainingRule.objects.filter(
        campaign_id=campaign_id, kind=TrainingRule.Kind.EVERY_N_JUDGMENTS, is_active=True
    )
    Campaign.objects.filter(pk=campaign_id).update(announce_judgments=Exists(every_n))


def _state(rule: TrainingRule) -> dict[str, Any]:
    """Return what an audit entry records of a rule."""
    return {
        "kind": rule.kind,
        "n": rule.n,
        "base_model_path": rule.base_model_path,
        "dataset_method": rule.dataset_method,
        "dataset_params": rule.dataset_params,
        "config": rule.config,
        "gpus": rule.gpus,
        "is_active": rule.is_active,
    }


@transaction.atomic
def training_rule_create(
    *,
    campaign: Campaign,
    created_by: AbstractBaseUser,
    kind: str,
    base_model_path: str,
    n: int | None = None,
    config: Mapping[str, Any] | None = None,
    dataset_method: str = Dataset.Method.DAWID_SKENE,
    dataset_params: Mapping[str, Any] | None = None,
    gpus: int = 0,
    is_active: bool = True,
) -> TrainingRule:
    """Create a rule that trains a reward model every `n` judgments from now, or when the campaign closes."""
    if kind not in TrainingRule.Kind.values:
        raise field_error("kind", f"must be one of {', '.join(TrainingRule.Kind.values)}")
    cleaned_n = _n_clean(kind, n)
    params = _dataset_params_clean(dataset_method, dataset_params, campaign.overlap)
    model_path = training_model_path_clean(base_model_path=base_model_path)
    cleaned_config = training_config_clean(kind=TrainingRun.Kind.REWARD, config=config)
    cleaned_gpus = gpus_clean(gpus)
    _require_manager(created_by, campaign)
    rule = TrainingRule(
        campaign=campaign,
        kind=kind,
        n=cleaned_n,
        dataset_method=dataset_method,
        dataset_params=params,
        base_model_path=model_path,
        config=cleaned_config,
        gpus=cleaned_gpus,
        is_active=bool(is_active),
        created_by=created_by,
        last_fired_count=training_judgment_count(campaign_id=campaign.pk),
    )
    rule.full_clean()
    rule.save()
    training_rules_announce_sync(campaign_id=campaign.pk)
    audit_record(
        actor=created_by,
        campaign=campaign,
        action="training_rule.create",
        target=f"training_rule:{rule.pk}",
        after=_state(rule),
    )
    return rule


@transaction.atomic
def training_rule_update(
    *,
    rule: TrainingRule,
    actor: AbstractBaseUser,
    kind: str = UNSET,
    n: int | None = UNSET,
    base_model_path: str = UNSET,
    config: Mapping[str, Any] | None = UNSET,
    dataset_method: str = UNSET,
    dataset_params: Mapping[str, Any] | None = UNSET,
    gpus: int = UNSET,
    is_active: bool = UNSET,
) -> TrainingRule:
    """Change the fields given (the others keep their values); switch the rule on or off with `is_active`.

    A rule that becomes an every-N rule counts its N judgments from now; a changed N counts from
    the rule's last run. Runs already queued keep the settings they were queued with.
    """
    rule = TrainingRule.objects.select_for_update().select_related("campaign").get(pk=rule.pk)
    _require_manager(actor, rule.campaign)
    before = _state(rule)
    new_kind = rule.kind if kind is UNSET else kind
    if new_kind not in TrainingRule.Kind.values:
        raise field_error("kind", f"must be one of {', '.join(TrainingRule.Kind.values)}")
    new_n = _n_clean(new_kind, rule.n if n is UNSET else n)
    method = rule.dataset_method if dataset_method is UNSET else dataset_method
    if dataset_params is UNSET:
        # Another method has other parameters: a changed method starts from its defaults.
        dataset_params = rule.dataset_params if method == rule.dataset_method else None
    params = _dataset_params_clean(method, dataset_params, rule.campaign.overlap)
    if base_model_path is not UNSET:
        rule.base_model_path = training_model_path_clean(base_model_path=base_model_path)
    if config is not UNSET:
        rule.config = training_config_clean(kind=TrainingRun.Kind.REWARD, config=config)
    if gpus is not UNSET:
        rule.gpus = gpus_clean(gpus)
    if is_active is not UNSET:
        if not isinstance(is_active, bool):
            raise field_error("is_active", f"must be true or false, got {is_active!r}")
        rule.is_active = is_active
    if new_kind == TrainingRule.Kind.EVERY_N_JUDGMENTS and rule.kind != new_kind:
        rule.last_fired_count = training_judgment_count(campaign_id=rule.campaign_id)
    rule.kind, rule.n = new_kind, new_n
    rule.dataset_method, rule.dataset_params = method, params
    rule.full_clean()
    rule.save()
    training_rules_announce_sync(campaign_id=rule.campaign_id)
    old, new = audit_changes(before, _state(rule))
    if new:
        action = "training_rule.update"
        if set(new) == {"is_active"}:
            action = "training_rule.enable" if rule.is_active else "training_rule.disable"
        audit_record(
            actor=actor,
            campaign=rule.campaign,
            action=action,
            target=f"training_rule:{rule.pk}",
            before=old,
            after=new,
        )
    return rule


@transaction.atomic
def training_rule_delete(*, rule: TrainingRule, actor: AbstractBaseUser) -> None:
    """Delete the rule; the runs it started stay (without their rule), a queued or running one goes on."""
    rule = TrainingRule.objects.select_for_update().select_related("campaign").get(pk=rule.pk)
    _require_manager(actor, rule.campaign)
    audit_record(
        actor=actor,
        campaign=rule.campaign,
        action="training_rule.delete",
        target=f"training_rule:{rule.pk}",
        before=_state(rule),
    )
    rule.delete()
    training_rules_announce_sync(campaign_id=rule.campaign_id)
