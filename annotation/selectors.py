"""Permission-aware reads. Object access goes through here, never a bare `.get(pk=...)`."""

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.cache import cache
from django.core.paginator import Page, Paginator
from django.db.models import Count, F, Max, OuterRef, Prefetch, QuerySet, Subquery, Sum

from annotation.core.snapshot import (
    DEFAULT_METHOD,
    Consensus,
    Decision,
    JudgmentRow,
    default_params,
    item_of,
    snapshot_decide,
)
from annotation.errors import ForbiddenError, NotFoundError
from annotation.models import (
    Assignment,
    Campaign,
    CampaignCounter,
    Dataset,
    Item,
    ItemResponse,
    Judgment,
    Membership,
    Role,
)
from annotation.pseudonyms import annotator_pseudonym

User = AbstractBaseUser | AnonymousUser


def user_role(user: User) -> str | None:
    """Return the user's global role: superusers act as managers; others by group.

    Remembered on the user object, which lives for one request.
    """
    if not user.is_authenticated:
        return None
    if user.is_superuser:
        return Role.MANAGER
    cached = getattr(user, "_arbiter_role", False)
    if cached is not False:
        return cached
    names = set(user.groups.values_list("name", flat=True))
    role = next((r.value for r in (Role.MANAGER, Role.RESEARCHER, Role.ANNOTATOR) if r.value in names), None)
    user._arbiter_role = role
    return role


def campaign_list_for_user(*, user: User) -> QuerySet[Campaign]:
    """Return the campaigns the user may see: every one for a superuser, else their memberships."""
    if not user.is_authenticated:
        return Campaign.objects.none()
    if user.is_superuser:
        return Campaign.objects.all()
    return Campaign.objects.filter(memberships__user=user).distinct()


def membership_role(*, user: User, campaign: Campaign) -> str | None:
    """Return the user's role in the campaign, or None when they are not a member."""
    if not user.is_authenticated:
        return None
    if user.is_superuser:
        return Role.MANAGER
    m = Membership.objects.filter(campaign=campaign, user=user).only("role").first()
    return m.role if m else None


def campaign_get_for_user(
    *,
    user: User,
    campaign_id: int,
    roles: Iterable[str] = (Role.MANAGER, Role.ANNOTATOR, Role.RESEARCHER),
) -> Campaign:
    """Return the campaign if the user is a member with one of `roles`.

    A non-member gets "not found", so a forged id tells nothing; a member with the wrong role
    gets "forbidden".
    """
    campaign, role = None, None
    if isinstance(campaign_id, int) and user.is_authenticated:
        if user.is_superuser:
            campaign, role = Campaign.objects.filter(pk=campaign_id).first(), Role.MANAGER
        else:
            m = Membership.objects.select_related("campaign").filter(campaign_id=campaign_id, user=user).first()
            campaign, role = (m.campaign, m.role) if m else (None, None)
    if campaign is None or role is None:
        raise NotFoundError("Campaign not found.", extra={"campaign_id": campaign_id})
    if role not in set(roles):
        raise ForbiddenError("Your role in this campaign does not allow this.", extra={"role": role})
    return campaign


def campaign_progress(*, campaign: Campaign) -> dict[str, int]:
    """Return the campaign's progress counts (see `campaign_live_counts`)."""
    return campaign_live_counts(campaign_id=campaign.pk)


def campaign_live_counts(*, campaign_id: int) -> dict[str, int]:
    """Return a campaign's live progress: items, done, wanted, leased, remaining, complete, per minute.

    Reads the counters the services keep, the open leases and the last minute's judgments
    (all through indexes), never every item, so a dashboard stays cheap at any campaign size.
    """
    from datetime import timedelta

    from django.utils import timezone

    row = (
        Campaign.objects.filter(pk=campaign_id)
        .annotate(
            done=Subquery(_counter_sum("judgments")),
            complete=Subquery(_counter_sum("items_complete")),
        )
        .values("item_count", "wanted_judgments", "done", "complete")
        .first()
    ) or {}
    counts = {
        "items": row.get("item_count") or 0,
        "wanted": row.get("wanted_judgments") or 0,
        "done": row.get("done") or 0,
        "complete": row.get("complete") or 0,
        "leased": Assignment.objects.filter(
            campaign_id=campaign_id, status=Assignment.Status.LEASED, item__is_gold=False
        ).count(),
    }
    counts["remaining"] = counts["wanted"] - counts["done"]
    since = timezone.now() - timedelta(minutes=1)
    counts["per_minute"] = Judgment.objects.filter(
        campaign_id=campaign_id, created_at__gte=since, item__is_gold=False
    ).count()
    return counts


def _counter_sum(field: str) -> QuerySet:
    return (
        CampaignCounter.objects.filter(campaign=OuterRef("pk")).values("campaign").annotate(n=Sum(field)).values("n")[:1]
    )


def judging_progress(*, campaign_id: int, user: User) -> dict[str, int]:
    """Return the annotator's progress line: judgments done and wanted, and their own count.

    One query over counters kept by the services (a few rows), never the items, so it stays
    cheap at any campaign size.
    """
    row = (
        Campaign.objects.filter(pk=campaign_id)
        .annotate(
            done=Subquery(_counter_sum("judgments")),
            mine=Subquery(
                Membership.objects.filter(campaign=OuterRef("pk"), user_id=user.pk).values("judged")[:1]
            ),
        )
        .values("done", "mine", "wanted_judgments")
        .first()
    ) or {}
    mine = row.get("mine")
    if mine is None and row:  # a superuser judging without a membership
        mine = annotator_judgment_count(campaign_id=campaign_id, user=user)
    return {"done": row.get("done") or 0, "total": row.get("wanted_judgments") or 0, "mine": mine or 0}


def annotator_judgment_count(*, campaign_id: int, user: User) -> int:
    """Return how many judgments the user has made in the campaign (current ones only)."""
    return Judgment.objects.filter(campaign_id=campaign_id, annotator_id=user.pk, supersedes__isnull=True).count()


def dataset_get_for_user(
    *, user: User, dataset_id: int, roles: Iterable[str] = (Role.MANAGER, Role.RESEARCHER)
) -> Dataset:
    """Return the dataset (with its campaign) if the user has one of `roles` in its campaign.

    As for campaigns: a non-member gets "not found", a member with another role "forbidden".
    """
    dataset = None
    if isinstance(dataset_id, int) and user.is_authenticated:
        dataset = Dataset.objects.select_related("campaign").filter(pk=dataset_id).first()
    if dataset is None:
        raise NotFoundError("Dataset not found.", extra={"dataset_id": dataset_id})
    try:
        campaign_get_for_user(user=user, campaign_id=dataset.campaign_id, roles=roles)
    except NotFoundError:
        raise NotFoundError("Dataset not found.", extra={"dataset_id": dataset_id}) from None
    return dataset


def dataset_list_for_campaign(*, campaign: Campaign) -> QuerySet[Dataset]:
    """Return the campaign's datasets, newest version first (the caller has authorized the campaign)."""
    return Dataset.objects.filter(campaign=campaign).select_related("created_by").order_by("-version")


# --- the judgments a dataset snapshot reads ---------------------------------------------------------


def snapshot_judgments(*, campaign_id: int, last_judgment_id: int | None) -> QuerySet[Judgment]:
    """Return the judgments a snapshot taken at `last_judgment_id` reads: current ones at that point.

    A judgment is current if no judgment up to `last_judgment_id` supersedes it; corrections made
    later do not change an existing dataset.
    """
    if last_judgment_id is None:
        return Judgment.objects.none()
    return (
        Judgment.objects.filter(campaign_id=campaign_id, pk__lte=last_judgment_id)
        .exclude(superseded_by__pk__lte=last_judgment_id)
        .order_by("pk")
    )


def excluded_annotator_ids(*, campaign: Campaign) -> set[int]:
    """Return the ids of the campaign's members whose judgments are left out of aggregation now."""
    return set(Membership.objects.filter(campaign=campaign, excluded=True).values_list("user_id", flat=True))


def dataset_judgments(*, dataset: Dataset) -> QuerySet[Judgment]:
    """Return the judgments the dataset was built from: current at its snapshot, excluded members left out."""
    qs = snapshot_judgments(campaign_id=dataset.campaign_id, last_judgment_id=dataset.last_judgment_id)
    excluded = set((dataset.params or {}).get("excluded_annotators") or [])
    if not excluded:
        return qs
    annotators = qs.values_list("annotator_id", flat=True).distinct().order_by()
    return qs.exclude(annotator_id__in=[a for a in annotators if annotator_pseudonym(a) in excluded])


# --- live consensus for the manager's items page ----------------------------------------------------


@dataclass(frozen=True)
class LiveConsensus:
    """An item's consensus now, decided exactly as a dataset built now with the campaign's default
    method and parameters would decide it (`campaign_consensus_now`).

    `order` lists the item's response ids best first (a pair's winner first; ties and undecided
    pairs count half a win each); `tie` is true when no response comes out on top; `outcome` is
    the pairwise item's decision ("chosen", "tie" or "undecided"; "ranked" for more than two
    responses) and `reason` why a pair is not decided; `agreement` is the consensus confidence
    (the mean over the pairs of a ranking or rating); `pairs` holds every pair's decision.
    """

    order: list[int]
    tie: bool
    agreement: float
    judgments: int
    outcome: str = "chosen"
    reason: str = ""
    method: str = DEFAULT_METHOD
    pairs: tuple[Decision, ...] = ()


def campaign_consensus_settings(*, campaign: Campaign) -> tuple[str, dict]:
    """Return the method and parameters the items page and the dashboard decide by: the dataset
    form's defaults for this campaign (`annotation.core.snapshot.default_params`)."""
    return DEFAULT_METHOD, default_params(DEFAULT_METHOD, overlap=campaign.overlap)


def campaign_consensus_now(*, campaign: Campaign) -> Consensus:
    """Return the consensus of every current judgment of the campaign (excluded members left out,
    gold checks weighing annotators) by `campaign_consensus_settings`: the rows a dataset built now
    with the default method and parameters would read, through the same `snapshot_decide`."""
    method, params = campaign_consensus_settings(campaign=campaign)
    excluded = excluded_annotator_ids(campaign=campaign)
    # A pairwise decision needs neither the answer's details nor the display order: left unread.
    pairwise = campaign.kind == Campaign.Kind.PAIRWISE
    judgments = (
        Judgment.objects.filter(campaign=campaign, superseded_by__isnull=True)
        .exclude(annotator_id__in=excluded)
        .values_list("pk", "item_id", "annotator_id", "outcome", "preferred_response_id", "strength",
                     "item__is_gold", "item__gold", *(() if pairwise else ("answer",)))
        .order_by("pk")
    )
    rows = [
        JudgmentRow(judgment_id=j[0], item_id=j[1], annotator_id=j[2], outcome=j[3], preferred_response_id=j[4],
                    strength=j[5], answer={} if pairwise else (j[8] or {}), display_order=[], is_gold=j[6],
                    gold=j[7])
        for j in judgments.iterator(chunk_size=5000)
    ]
    item_responses: dict[int, list[int]] = defaultdict(list)
    for item_id, response_id in ItemResponse.objects.filter(item__campaign=campaign).order_by(
        "item_id", "position"
    ).values_list("item_id", "response_id"):
        item_responses[item_id].append(response_id)
    return snapshot_decide(rows, kind=campaign.kind, item_responses=item_responses, models={}, method=method,
                           params=params)


@dataclass(frozen=True)
class _CampaignDecisions:
    method: str
    by_item: dict[int, list[Decision]]
    judgments: dict[int, int]  # item -> annotators counted (one current judgment each)


_DECISIONS_CACHE_SECONDS = 3600


def _campaign_decisions(*, campaign: Campaign) -> _CampaignDecisions:
    """Return `campaign_consensus_now` grouped by item, cached per judgment state.

    The key holds everything the decisions depend on that can change: the campaign's judgment
    count and newest judgment (a correction is a new judgment), its excluded members and its
    overlap (the default min_judgments follows it); its creation time keeps a reused id apart. Paging through the items list then costs one
    aggregation, not one per page.
    """
    state = Judgment.objects.filter(campaign=campaign).aggregate(n=Count("pk"), last=Max("pk"))
    excluded = sorted(excluded_annotator_ids(campaign=campaign))
    key = (f"arbiter:items-consensus:{campaign.pk}:{campaign.created_at.timestamp()}:{campaign.overlap}:"
           f"{state['n']}:{state['last']}:{','.join(map(str, excluded))}")
    if len(key) > 200:  # many excluded members: a digest keeps the key within memcached's limit
        key = "arbiter:items-consensus:" + hashlib.sha256(key.encode()).hexdigest()
    cached = cache.get(key)
    if cached is not None:
        return cached
    consensus = campaign_consensus_now(campaign=campaign)
    by_item: dict[int, list[Decision]] = defaultdict(list)
    for d in consensus.decisions:
        by_item[d.item_id].append(d)
    annotators: dict[int, set[int]] = defaultdict(set)
    for p in consensus.regular:
        annotators[item_of(p.item_id)].add(p.annotator_id)
    out = _CampaignDecisions(method=consensus.result.method, by_item=dict(by_item),
                             judgments={i: len(a) for i, a in annotators.items()})
    cache.set(key, out, _DECISIONS_CACHE_SECONDS)
    return out


def items_live_consensus(*, campaign: Campaign, item_ids: Sequence[int]) -> dict[int, LiveConsensus]:
    """Return the live consensus of each judged regular item in `item_ids` (see `LiveConsensus`).

    The consensus is computed over the whole campaign, as a dataset's is: annotator weights come
    from every judgment and gold check, not from the page's items alone.
    """
    decided = _campaign_decisions(campaign=campaign)
    by_item = {i: decided.by_item[i] for i in item_ids if i in decided.by_item}
    if not by_item:
        return {}
    responses: dict[int, list[int]] = defaultdict(list)
    for item_id, response_id in ItemResponse.objects.filter(item_id__in=list(by_item)).order_by(
        "item_id", "position"
    ).values_list("item_id", "response_id"):
        responses[item_id].append(response_id)
    out = {}
    for item, decisions in by_item.items():
        wins: dict[int, float] = defaultdict(float)
        for d in decisions:
            for r in (d.response_a_id, d.response_b_id):
                wins[r] += float(r == d.winner_id) if d.outcome == "chosen" else 0.5
        listed = responses[item]
        order = sorted(listed, key=lambda r: (-wins.get(r, 0.0), listed.index(r)))
        top = [r for r in order if wins.get(r, 0.0) == wins.get(order[0], 0.0)]
        single = decisions[0] if len(decisions) == 1 and len(listed) == 2 else None
        out[item] = LiveConsensus(
            order=order, tie=len(top) > 1,
            agreement=round(sum(d.confidence for d in decisions) / len(decisions), 3),
            judgments=decided.judgments[item],
            outcome=single.outcome if single else "ranked", reason=single.reason if single else "",
            method=decided.method, pairs=tuple(decisions),
        )
    return out


# The manager's items list: its filter ("show": label, query) and page size, shared by the page and the API.
ITEM_FILTERS = {
    "all": ("All items", {}),
    "open": ("Still wanted", {"is_gold": False, "judgment_count__lt": F("target")}),
    "judged": ("Judged", {"judgment_count__gte": 1}),
    "gold": ("Gold checks", {"is_gold": True}),
}
ITEMS_PER_PAGE = 20
AUDIT_PER_PAGE = 50


def item_list_pages(*, campaign: Campaign, item_ids: Iterable[int]) -> dict[int, int]:
    """Return the page of the items list ("all", by id) that shows each of `item_ids`."""
    ids = sorted(set(item_ids))
    if not ids:
        return {}
    listed = Item.objects.filter(campaign=campaign).order_by("pk").values_list("pk", flat=True)
    return {i: listed.filter(pk__lt=i).count() // ITEMS_PER_PAGE + 1 for i in ids}


@dataclass(frozen=True)
class ItemRow:
    """One item of the manager's items list with what the page and the API show of it."""

    item: Item  # its prompt loaded
    links: list[ItemResponse]  # its responses loaded, by position
    judgments: list[Judgment]  # their annotators loaded, oldest first
    consensus: LiveConsensus | None  # None while nobody counted has judged it


@dataclass(frozen=True)
class ItemPage:
    page: Page
    rows: list[ItemRow]
    excluded: set[int]  # ids of the members whose judgments are left out of aggregation
    superseded: set[int]  # ids of the judgments a later one corrected


def item_page_for_campaign(*, campaign: Campaign, show: str, page: str | int | None) -> ItemPage:
    """Return one page of the campaign's items (filtered by `show`, a key of ITEM_FILTERS) with their
    responses, judgments and live consensus; the caller has checked that the user manages the campaign."""
    items = (
        Item.objects.filter(campaign=campaign, **ITEM_FILTERS[show][1])
        .select_related("prompt")
        .prefetch_related(
            Prefetch("item_responses", queryset=ItemResponse.objects.select_related("response").order_by("position")),
            Prefetch("judgments", queryset=Judgment.objects.select_related("annotator").order_by("created_at", "pk")),
        )
        .order_by("pk")
    )
    current = Paginator(items, ITEMS_PER_PAGE).get_page(page)
    ids = [item.pk for item in current.object_list]
    consensus = items_live_consensus(campaign=campaign, item_ids=ids)
    superseded = set(
        Judgment.objects.filter(item_id__in=ids, supersedes__isnull=False).values_list("supersedes_id", flat=True)
    )
    rows = [
        ItemRow(item=item, links=list(item.item_responses.all()), judgments=list(item.judgments.all()),
                consensus=consensus.get(item.pk))
        for item in current.object_list
    ]
    return ItemPage(page=current, rows=rows, excluded=excluded_annotator_ids(campaign=campaign), superseded=superseded)
