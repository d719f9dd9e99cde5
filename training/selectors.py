"""Permission-aware reads of training runs. Object access goes through here.

Staff see and change every run. A run belongs to its campaign (the dataset's): the campaign's
managers start, cancel and resume its runs, its researchers read them, and anyone else gets
"not found", so a forged id tells nothing. A researcher asking to change a run gets "forbidden".
"""

import os
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings
from django.db.models import Count, Max, QuerySet, Sum

from annotation.errors import ForbiddenError, NotFoundError
from annotation.models import Campaign, CampaignCounter, Dataset, Membership, Role
from annotation.selectors import User, membership_role
from training.models import TrainingLogLine, TrainingMetric, TrainingRule, TrainingRun

VIEWERS = (Role.MANAGER, Role.RESEARCHER)
RULES_FORBIDDEN = "Only the campaign's managers see and change its training rules."


def is_training_staff(user: User) -> bool:
    """Return whether the user is staff (or a superuser): they see and manage every run."""
    return bool(user.is_authenticated and (user.is_staff or user.is_superuser))


def training_run_get_for_user(*, user: User, run_id: int, manage: bool = False) -> TrainingRun:
    """Return the run if the user may read it; with `manage`, if they may also change it."""
    run = None
    if isinstance(run_id, int) and user.is_authenticated:
        run = (
            TrainingRun.objects.select_related("dataset", "campaign", "created_by", "rule")
            .filter(pk=run_id)
            .first()
        )
    if run is None:
        raise NotFoundError("Training run not found.", extra={"run_id": run_id})
    if is_training_staff(user):
        return run
    role = membership_role(user=user, campaign=run.campaign) if run.campaign_id else None
    if role not in VIEWERS:
        raise NotFoundError("Training run not found.", extra={"run_id": run_id})
    if manage and role != Role.MANAGER:
        raise ForbiddenError(
            "Only the campaign's managers can change its training runs.", extra={"role": role}
        )
    return run


def training_run_list_for_user(*, user: User) -> QuerySet[TrainingRun]:
    """Return the runs the user may read, newest first."""
    runs = TrainingRun.objects.select_related("dataset", "campaign", "created_by").order_by(
        "-queued_at", "-id"
    )
    if not user.is_authenticated:
        return runs.none()
    if is_training_staff(user):
        return runs
    campaigns = Membership.objects.filter(user=user, role__in=VIEWERS).values("campaign_id")
    return runs.filter(campaign_id__in=campaigns)


def training_dataset_get_for_user(*, user: User, dataset_id: int) -> Dataset:
    """Return the dataset if the user may train on it: staff, or a manager of its campaign."""
    dataset = None
    if isinstance(dataset_id, int) and user.is_authenticated:
        dataset = Dataset.objects.select_related("campaign").filter(pk=dataset_id).first()
    if dataset is None:
        raise NotFoundError("Dataset not found.", extra={"dataset_id": dataset_id})
    if is_training_staff(user):
        return dataset
    role = membership_role(user=user, campaign=dataset.campaign)
    if role == Role.RESEARCHER:
        raise ForbiddenError(
            "Only the campaign's managers start training runs.", extra={"role": role}
        )
    if role != Role.MANAGER:
        raise NotFoundError("Dataset not found.", extra={"dataset_id": dataset_id})
    return dataset


def training_campaign_get_for_user(*, user: User, campaign_id: int) -> Campaign:
    """Return the campaign if the user may start runs on its prompts: staff, or one of its managers."""
    campaign = None
    if isinstance(campaign_id, int) and user.is_authenticated:
        campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None:
        raise NotFoundError("Campaign not found.", extra={"campaign_id": campaign_id})
    if is_training_staff(user):
        return campaign
    role = membership_role(user=user, campaign=campaign)
    if role == Role.RESEARCHER:
        raise ForbiddenError(
            "Only the campaign's managers start training runs.", extra={"role": role}
        )
    if role != Role.MANAGER:
        raise NotFoundError("Campaign not found.", extra={"campaign_id": campaign_id})
    return campaign


def training_campaigns_for_user(*, user: User) -> QuerySet[Campaign]:
    """Return the campaigns whose prompts the user may train on (staff: all; else those they manage)."""
    campaigns = Campaign.objects.order_by("-created_at", "-id")
    if not user.is_authenticated:
        return campaigns.none()
    if is_training_staff(user):
        return campaigns
    managed = Membership.objects.filter(user=user, role=Role.MANAGER).values("campaign_id")
    return campaigns.filter(pk__in=managed)


def training_datasets_for_user(*, user: User) -> QuerySet[Dataset]:
    """Return the snapshots the user may train on (ready or still building), newest first."""
    datasets = (
        Dataset.objects.select_related("campaign")
        .exclude(status=Dataset.Status.FAILED)
        .order_by("-created_at", "-id")
    )
    if not user.is_authenticated:
        return datasets.none()
    if is_training_staff(user):
        return datasets
    managed = Membership.objects.filter(user=user, role=Role.MANAGER).values("campaign_id")
    return datasets.filter(campaign_id__in=managed)


def training_run_metrics(*, run: TrainingRun, after_id: int = 0) -> QuerySet[TrainingMetric]:
    """Return the run's metric rows (newer than `after_id`), in step order."""
    return TrainingMetric.objects.filter(run=run, pk__gt=after_id).order_by("step", "split")


def training_run_log(
    *, run: TrainingRun, after_id: int = 0, limit: int | None = None
) -> list[TrainingLogLine]:
    """Return the run's log lines newer than `after_id`, oldest first (the last `limit` of them)."""
    lines = TrainingLogLine.objects.filter(run=run, pk__gt=after_id)
    if limit is None:
        return list(lines.order_by("pk"))
    return list(reversed(lines.order_by("-pk")[:limit]))


def training_rules_for_campaign(*, campaign_id: int) -> QuerySet[TrainingRule]:
    """Return the campaign's training rules (the caller has authorized the campaign), oldest first,
    each with `run_count` (the runs it started) and `last_run_at` (when it last started one)."""
    return (
        TrainingRule.objects.filter(campaign_id=campaign_id)
        .select_related("created_by")
        .annotate(run_count=Count("runs"), last_run_at=Max("runs__queued_at"))
        .order_by("id")
    )


def training_judgment_count(*, campaign_id: int) -> int:
    """Return the campaign's judgments on regular items, as the rules count them (from the counters)."""
    total = CampaignCounter.objects.filter(campaign_id=campaign_id).aggregate(n=Sum("judgments"))[
        "n"
    ]
    return int(total or 0)


def training_rule_campaign_get_for_user(*, user: User, campaign_id: int) -> Campaign:
    """Return the campaign if the user may see and change its rules: staff, or one of its managers."""
    try:
        return training_campaign_get_for_user(user=user, campaign_id=campaign_id)
    except ForbiddenError as exc:
        raise ForbiddenError(RULES_FORBIDDEN, extra=exc.extra) from exc


def training_rule_get_for_user(*, user: User, rule_id: int) -> TrainingRule:
    """Return the rule if the user may change it: staff, or a manager of its campaign.

    Its campaign's researchers get "forbidden"; anyone else "not found".
    """
    rule = None
    if isinstance(rule_id, int) and user.is_authenticated:
        rule = (
            TrainingRule.objects.select_related("campaign", "created_by").filter(pk=rule_id).first()
        )
    if rule is None:
        raise NotFoundError("Training rule not found.", extra={"rule_id": rule_id})
    if is_training_staff(user):
        return rule
    role = membership_role(user=user, campaign=rule.campaign)
    if role == Role.RESEARCHER:
        raise ForbiddenError(RULES_FORBIDDEN, extra={"role": role})
    if role != Role.MANAGER:
        raise NotFoundError("Training rule not found.", extra={"rule_id": rule_id})
    return rule


def training_rule_runs(
    *, rules: Iterable[TrainingRule], per_rule: int = 5
) -> dict[int, list[TrainingRun]]:
    """Return each rule's newest runs (at most `per_rule`), newest first, by rule id."""
    ids = [rule.pk for rule in rules]
    found: dict[int, list[TrainingRun]] = {pk: [] for pk in ids}
    runs = (
        TrainingRun.objects.filter(rule_id__in=ids)
        .select_related("dataset")
        .order_by("-queued_at", "-id")
    )
    for run in runs:
        if len(found[run.rule_id]) < per_rule:
            found[run.rule_id].append(run)
    return found


def training_reward_runs_succeeded(*, user: User, limit: int = 100) -> QuerySet[TrainingRun]:
    """Return the succeeded reward-model runs with a saved model that the user may read, newest first."""
    return (
        training_run_list_for_user(user=user)
        .filter(kind=TrainingRun.Kind.REWARD, status=TrainingRun.Status.SUCCEEDED)
        .filter(artifacts__has_key="model")[:limit]
    )


def base_models_available(
    *, roots: Iterable[str | os.PathLike[str]] | None = None, max_depth: int = 3
) -> list[Path]:
    """Return the model folders (holding a config.json) found under the model roots, sorted.

    Looks at most `max_depth` folders deep and not inside a model folder, so a large root with
    checkpoints inside stays cheap to list.
    """
    found: list[Path] = []
    for root in roots if roots is not None else settings.ARBITER_MODEL_ROOTS:
        root = Path(root)
        if not root.is_dir():
            continue
        stack = [(root, 0)]
        while stack:
            folder, depth = stack.pop()
            if (folder / "config.json").is_file():
                found.append(folder.resolve())
                continue
            if depth >= max_depth:
                continue
            try:
                children = sorted(
                    p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                )
            except OSError:
                continue
            stack.extend((child, depth + 1) for child in children)
    return sorted(set(found))
