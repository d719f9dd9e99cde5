"""Campaigns, the data they serve, and the judgments made on it.

Invariants live in the database as constraints; writes go through `annotation.services`.
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class Role(models.TextChoices):
    """A user's role in Arbiter (global) and in a campaign (membership)."""

    MANAGER = "manager", "Manager"
    ANNOTATOR = "annotator", "Annotator"
    RESEARCHER = "researcher", "Researcher"


class Campaign(models.Model):
    class Kind(models.TextChoices):
        PAIRWISE = "pairwise", "Pairwise comparison"
        RANKING = "ranking", "K-wise ranking"
        RATING = "rating", "Rating"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        CLOSED = "closed", "Closed"

    name = models.CharField(max_length=200)
    instructions = models.TextField(blank=True, help_text="Markdown shown to annotators.")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.PAIRWISE)
    criteria = models.JSONField(
        default=list, blank=True, help_text="List of {name, label, scale} criteria."
    )
    allow_ties = models.BooleanField(default=True)
    allow_both_bad = models.BooleanField(default=True)
    use_strength = models.BooleanField(
        default=True, help_text="Ask how much better (slightly / clearly / much)."
    )
    require_rationale = models.BooleanField(default=False)
    allow_editing = models.BooleanField(default=False)
    overlap = models.PositiveSmallIntegerField(default=1, help_text="Judgments wanted per item.")
    lease_seconds = models.PositiveIntegerField(default=600)
    gold_rate = models.FloatField(default=0.0, help_text="Share of served items that are gold checks.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    version = models.PositiveIntegerField(default=1)
    parent = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="children",
        help_text="The campaign this one continues: an earlier version (schema edit) or round.",
    )
    round_number = models.PositiveIntegerField(
        default=1, help_text="Round of the generate → judge → train loop this campaign belongs to."
    )
    item_count = models.PositiveIntegerField(default=0, help_text="Regular (non-gold) items; kept by imports.")
    wanted_judgments = models.PositiveIntegerField(
        default=0, help_text="Judgments wanted over all regular (non-gold) items; kept by imports."
    )
    announce_judgments = models.BooleanField(
        default=False,
        help_text="Announce each stored judgment to the apps that listen (annotation.hooks); kept by them.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="campaigns_created"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="campaigns"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(overlap__gte=1, overlap__lte=100), name="campaign_overlap_range"),
            models.CheckConstraint(condition=Q(lease_seconds__gte=30), name="campaign_lease_min"),
            models.CheckConstraint(condition=Q(gold_rate__gte=0.0, gold_rate__lte=1.0), name="campaign_gold_rate_range"),
            models.CheckConstraint(condition=Q(kind__in=["pairwise", "ranking", "rating"]), name="campaign_kind_valid"),
            models.CheckConstraint(
                condition=Q(status__in=["draft", "active", "paused", "closed"]), name="campaign_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name


COUNTER_SHARDS = 16


class CampaignCounter(models.Model):
    """Judgments made in a campaign, spread over shards so concurrent submits rarely share a row."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="counters")
    shard = models.PositiveSmallIntegerField()
    judgments = models.PositiveIntegerField(default=0)
    items_complete = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "shard"], name="campaign_counter_unique"),
            models.CheckConstraint(condition=Q(shard__lt=COUNTER_SHARDS), name="campaign_counter_shard_range"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}/{self.shard}: {self.judgments}"


class Membership(models.Model):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    is_active = models.BooleanField(default=True, help_text="A paused member is served nothing.")
    cap = models.PositiveIntegerField(null=True, blank=True, help_text="Most judgments this member may make.")
    judged = models.PositiveIntegerField(default=0, help_text="Judgments this member has made here.")
    gold_judged = models.PositiveIntegerField(default=0, help_text="Gold checks this member has answered.")
    gold_correct = models.PositiveIntegerField(default=0, help_text="Gold checks answered as the gold answer.")
    excluded = models.BooleanField(
        default=False, help_text="This member's judgments are left out of aggregation (reversible)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "user"], name="membership_unique"),
            models.CheckConstraint(
                condition=Q(role__in=["manager", "annotator", "researcher"]), name="membership_role_valid"
            ),
            models.CheckConstraint(condition=Q(gold_correct__lte=F("gold_judged")), name="membership_gold_counts"),
        ]

    def __str__(self) -> str:
        return f"{self.user} as {self.role} in {self.campaign}"

    @property
    def gold_accuracy(self) -> float | None:
        return self.gold_correct / self.gold_judged if self.gold_judged else None


class Prompt(models.Model):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="prompts")
    external_id = models.CharField(max_length=200, blank=True)
    messages = models.JSONField(help_text="The conversation: a list of {role, content}.")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "external_id"],
                condition=~Q(external_id=""),
                name="prompt_external_id_unique",
            )
        ]

    def __str__(self) -> str:
        return self.external_id or f"prompt {self.pk}"


class Response(models.Model):
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="responses")
    content = models.TextField(blank=True)
    model_name = models.CharField(
        max_length=200, blank=True, help_text="The model or checkpoint; never shown to annotators."
    )
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["model_name"])]

    def __str__(self) -> str:
        return f"response {self.pk} ({self.model_name or 'unknown model'})"


GOLD_TARGET = 32767  # a gold check is served to every annotator, so it is never "complete"


class Item(models.Model):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="items")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="items")
    responses = models.ManyToManyField(Response, through="ItemResponse", related_name="items")
    priority = models.IntegerField(default=0)
    gold = models.JSONField(null=True, blank=True, help_text="Known answer when this item is a check.")
    is_gold = models.BooleanField(default=False)
    target = models.PositiveSmallIntegerField(
        help_text="Judgments wanted: the campaign's overlap, or GOLD_TARGET for a gold check."
    )
    judgment_count = models.PositiveIntegerField(default=0)
    lease_count = models.PositiveIntegerField(default=0, help_text="Open, unexpired leases.")
    random_key = models.FloatField(default=0.0, help_text="Fixed random tiebreak for serving order.")
    content_hash = models.CharField(
        max_length=64, blank=True, default="",
        help_text="SHA-256 of the normalized conversation and replies (annotation.core.importing.content_hash); "
        "finds an imported duplicate with one indexed query.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Exact overlap, held by the database whatever the concurrency.
            models.CheckConstraint(
                condition=Q(judgment_count__lte=F("target") - F("lease_count")), name="item_within_target"
            ),
            models.CheckConstraint(
                condition=Q(judgment_count__gte=0) & Q(lease_count__gte=0), name="item_counts_nonnegative"
            ),
            models.CheckConstraint(condition=Q(is_gold=False) | Q(gold__isnull=False), name="item_gold_has_answer"),
        ]
        indexes = [
            # Only items that still need judgments are in it, so `next` does not walk past the
            # items already complete however full the campaign gets.
            models.Index(
                fields=["campaign", "is_gold", "-judgment_count", "-priority", "random_key"],
                name="item_serving_open",
                condition=Q(judgment_count__lt=F("target") - F("lease_count")),
            ),
            models.Index(fields=["campaign", "content_hash"], name="item_content_hash"),
        ]

    def __str__(self) -> str:
        return f"item {self.pk}"


class ItemResponse(models.Model):
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="item_responses")
    response = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="item_responses")
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["item", "response"], name="item_response_unique"),
            models.UniqueConstraint(fields=["item", "position"], name="item_position_unique"),
        ]

    def __str__(self) -> str:
        return f"item {self.item_id} position {self.position}: response {self.response_id}"


class Assignment(models.Model):
    class Status(models.TextChoices):
        LEASED = "leased", "Leased"
        SUBMITTED = "submitted", "Submitted"
        SKIPPED = "skipped", "Skipped"
        EXPIRED = "expired", "Expired"

    # No single-column indexes on campaign and item: `assignment_by_annotator` and
    # `assignment_expiry` lead with the campaign, the unique (item, annotator) with the item, and
    # every index is written on each lease and each submit.
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="assignments", db_index=False)
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="assignments", db_index=False)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.LEASED)
    display_order = models.JSONField(help_text="Response ids in the order shown on screen.")
    leased_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    skip_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "annotator"], name="assignment_one_per_item_annotator"),
            models.CheckConstraint(
                condition=Q(status__in=["leased", "submitted", "skipped", "expired"]), name="assignment_status_valid"
            ),
            models.CheckConstraint(condition=Q(expires_at__gt=F("leased_at")), name="assignment_expiry_after_lease"),
        ]
        indexes = [
            models.Index(fields=["campaign", "annotator", "status"], name="assignment_by_annotator"),
            models.Index(fields=["campaign", "status", "expires_at"], name="assignment_expiry"),
        ]

    def __str__(self) -> str:
        return f"assignment {self.pk} ({self.status})"


class Judgment(models.Model):
    class Outcome(models.TextChoices):
        PREFERRED = "preferred", "One response preferred"
        TIE = "tie", "Tie"
        BOTH_BAD = "both_bad", "Both bad"
        RANKED = "ranked", "Ranked (see answer.ranking)"
        RATED = "rated", "Rated (see answer.ratings)"

    # `judgment_by_campaign` (campaign, created_at) serves lookups by campaign.
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="judgments", db_index=False)
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="judgments")
    assignment = models.ForeignKey(Assignment, on_delete=models.PROTECT, related_name="judgments")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="judgments")
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    preferred_response = models.ForeignKey(
        Response, null=True, blank=True, on_delete=models.PROTECT, related_name="preferred_in"
    )
    strength = models.PositiveSmallIntegerField(null=True, blank=True, help_text="1 slightly, 2 clearly, 3 much better.")
    answer = models.JSONField(
        default=dict,
        blank=True,
        help_text="Kind-specific answer against response ids: criteria winners, ranking groups, ratings, flags.",
    )
    rationale = models.TextField(blank=True)
    edited_response = models.TextField(blank=True)
    display_order = models.JSONField(help_text="Response ids in the order they were shown.")
    time_taken_ms = models.PositiveIntegerField(null=True, blank=True)
    campaign_version = models.PositiveIntegerField()
    gold_correct = models.BooleanField(null=True, blank=True, help_text="On a gold check: did it match the gold answer?")
    supersedes = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="superseded_by"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # One original judgment per assignment: submit is idempotent on the assignment.
            models.UniqueConstraint(
                fields=["assignment"], condition=Q(supersedes__isnull=True), name="judgment_one_per_assignment"
            ),
            models.CheckConstraint(
                condition=Q(outcome__in=["preferred", "tie", "both_bad", "ranked", "rated"]),
                name="judgment_outcome_valid",
            ),
            models.CheckConstraint(
                condition=(Q(outcome="preferred") & Q(preferred_response__isnull=False))
                | (~Q(outcome="preferred") & Q(preferred_response__isnull=True)),
                name="judgment_preferred_matches_outcome",
            ),
            models.CheckConstraint(
                condition=Q(strength__isnull=True) | Q(strength__gte=1, strength__lte=3),
                name="judgment_strength_range",
            ),
        ]
        indexes = [models.Index(fields=["campaign", "created_at"], name="judgment_by_campaign")]

    def __str__(self) -> str:
        return f"judgment {self.pk} on item {self.item_id}"


class Dataset(models.Model):
    """An immutable, versioned snapshot of a campaign's aggregated comparisons.

    Written once by `annotation.services.datasets`: created `building`, then filled by the build
    task and marked `ready` (or `failed` with the error). There is no update or delete path.
    """

    class Method(models.TextChoices):
        MAJORITY = "majority", "Majority vote"
        DAWID_SKENE = "dawid_skene", "Dawid–Skene"
        RELIABILITY_WEIGHTED = "reliability_weighted", "Reliability-weighted vote"

    class Status(models.TextChoices):
        BUILDING = "building", "Building"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="datasets")
    version = models.PositiveIntegerField(help_text="1, 2, ... per campaign.")
    method = models.CharField(max_length=32, choices=Method.choices)
    params = models.JSONField(default=dict, blank=True, help_text="The aggregation parameters used.")
    campaign_version = models.PositiveIntegerField(help_text="The campaign's version when the snapshot was taken.")
    last_judgment_id = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Newest judgment the snapshot read: judgments after it are not in it."
    )
    content_hash = models.CharField(max_length=64, blank=True, help_text="sha256 of the canonical rows.")
    item_count = models.PositiveIntegerField(default=0)
    comparison_count = models.PositiveIntegerField(default=0)
    judgment_count = models.PositiveIntegerField(default=0, help_text="Judgments on regular items that were used.")
    annotator_count = models.PositiveIntegerField(default=0)
    stats = models.JSONField(default=dict, blank=True, help_text="Agreement, position bias, reliability, confidence.")
    leaderboard = models.JSONField(default=dict, blank=True, help_text="Bradley–Terry scores with 95% intervals.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.BUILDING)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="datasets_created")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["campaign", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "version"], name="dataset_version_unique"),
            models.CheckConstraint(condition=Q(version__gte=1), name="dataset_version_positive"),
            models.CheckConstraint(
                condition=Q(method__in=["majority", "dawid_skene", "reliability_weighted"]), name="dataset_method_valid"
            ),
            models.CheckConstraint(condition=Q(status__in=["building", "ready", "failed"]), name="dataset_status_valid"),
            models.CheckConstraint(
                condition=~Q(status="ready") | ~Q(content_hash=""), name="dataset_ready_has_hash"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.campaign} v{self.version} ({self.method})"


class DatasetComparison(models.Model):
    """One aggregated comparison of a dataset: a prompt with a chosen and a rejected response.

    Prompt and response texts are snapshots, so exports stream these rows and never recompute.
    `outcome` is `tie` when the consensus preferred neither, and `undecided` when it leaned one
    way but too few judgments agreed or its confidence was below the dataset's threshold; in both
    chosen/rejected keep the item's response order, the margin is 0, and no training export reads
    the row.
    """

    class Outcome(models.TextChoices):
        CHOSEN = "chosen", "Chosen preferred"
        TIE = "tie", "Tie"
        UNDECIDED = "undecided", "Undecided (held back)"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="comparisons")
    position = models.PositiveIntegerField(help_text="Row order in the dataset (and in every export).")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="+")
    prompt = models.JSONField(help_text="The conversation: a list of {role, content}.")
    chosen_response = models.ForeignKey(Response, on_delete=models.PROTECT, related_name="+")
    chosen_text = models.TextField(blank=True)
    chosen_model = models.CharField(max_length=200, blank=True)
    rejected_response = models.ForeignKey(Response, on_delete=models.PROTECT, related_name="+")
    rejected_text = models.TextField(blank=True)
    rejected_model = models.CharField(max_length=200, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    margin = models.FloatField()
    confidence = models.FloatField()
    n_judgments = models.PositiveIntegerField()

    class Meta:
        ordering = ["dataset", "position"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "position"], name="dataset_comparison_position_unique"),
            models.UniqueConstraint(
                fields=["dataset", "item", "chosen_response", "rejected_response"], name="dataset_comparison_pair_unique"
            ),
            models.CheckConstraint(
                condition=Q(outcome__in=["chosen", "tie", "undecided"]), name="dataset_comparison_outcome_valid"
            ),
            models.CheckConstraint(
                condition=~Q(chosen_response=F("rejected_response")), name="dataset_comparison_two_responses"
            ),
            models.CheckConstraint(condition=Q(n_judgments__gte=1), name="dataset_comparison_judged"),
            models.CheckConstraint(condition=Q(margin__gte=0), name="dataset_comparison_margin_nonnegative"),
            models.CheckConstraint(
                condition=Q(confidence__gte=0.0, confidence__lte=1.0), name="dataset_comparison_confidence_range"
            ),
        ]

    def __str__(self) -> str:
        return f"dataset {self.dataset_id} row {self.position}"


class Invite(models.Model):
    """A link that makes whoever opens it (signed in) a member of a campaign, until it expires."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="invites")
    token = models.CharField(max_length=64, unique=True)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    cap = models.PositiveIntegerField(null=True, blank=True, help_text="Cap given to members who join by it.")
    max_uses = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: no limit.")
    uses = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(role__in=["manager", "annotator", "researcher"]), name="invite_role_valid"
            ),
            models.CheckConstraint(
                condition=Q(max_uses__isnull=True) | Q(uses__lte=F("max_uses")), name="invite_uses_within_max"
            ),
        ]

    def __str__(self) -> str:
        return f"invite to {self.campaign} as {self.role}"


class AuditEntry(models.Model):
    """One manager action: who did what to which object, when, and the values before and after."""

    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, null=True, blank=True, related_name="audit_entries"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="audit_entries"
    )
    action = models.CharField(max_length=64, help_text="Dotted name, e.g. membership.exclude.")
    target = models.CharField(max_length=200, blank=True, help_text="What was acted on, e.g. user:12.")
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["campaign", "-created_at"], name="audit_campaign_time")]

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.target}"
