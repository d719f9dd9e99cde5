"""Training runs (reward model, PPO, DPO) on dataset snapshots, and the rules that start them.

A `TrainingRun` row is the whole state of a run: the Celery task only carries its id. Writes go
through `training.services` (queueing, cancel, resume, recovery) and `training.execution` (the
worker's progress); invariants live in the database as constraints.
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class TrainingRun(models.Model):
    class Kind(models.TextChoices):
        REWARD = "reward", "Reward model"
        PPO = "ppo", "PPO"
        DPO = "dpo", "DPO"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)
    ENDED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    kind = models.CharField(max_length=16, choices=Kind.choices)
    dataset = models.ForeignKey(
        "annotation.Dataset",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="training_runs",
        help_text="The snapshot trained on; empty for kinds that read a campaign's prompts.",
    )
    campaign = models.ForeignKey(
        "annotation.Campaign",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="training_runs",
        help_text="Whose managers and researchers may see the run (the dataset's campaign).",
    )
    rule = models.ForeignKey(
        "training.TrainingRule",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runs",
        help_text="The rule that started the run, if one did.",
    )
    base_model_path = models.CharField(
        max_length=1000, help_text="A local folder under ARBITER_MODEL_ROOTS."
    )
    config = models.JSONField(help_text="The validated config of the kind, every field filled in.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    step = models.PositiveIntegerField(default=0, help_text="Optimizer steps done.")
    total_steps = models.PositiveIntegerField(
        default=0, help_text="Optimizer steps planned (0 until known)."
    )
    summary = models.JSONField(default=dict, blank=True, help_text="Final metrics and counts.")
    artifacts = models.JSONField(
        default=dict, blank=True, help_text="Paths: output folder, model, last checkpoint."
    )
    error = models.TextField(blank=True)
    gpus = models.PositiveSmallIntegerField(
        default=0, help_text="GPUs to train on; more than 1 uses accelerate launch."
    )
    cancel_requested = models.BooleanField(default=False)
    auto_resumes = models.PositiveSmallIntegerField(
        default=0, help_text="Times the run was requeued automatically after its worker was lost."
    )
    celery_task_id = models.CharField(max_length=255, blank=True)
    worker = models.CharField(
        max_length=255, blank=True, help_text="host:pid of the worker running it."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="training_runs_created"
    )
    queued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-queued_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["reward", "ppo", "dpo"]), name="training_run_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "succeeded", "failed", "cancelled"]),
                name="training_run_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(total_steps=0) | Q(step__lte=F("total_steps")),
                name="training_run_step_within_total",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["succeeded", "failed", "cancelled"])
                | Q(finished_at__isnull=False),
                name="training_run_ended_has_finish_time",
            ),
            models.CheckConstraint(condition=Q(gpus__lte=64), name="training_run_gpus_range"),
        ]
        indexes = [
            models.Index(fields=["status", "heartbeat_at"], name="training_run_by_heartbeat"),
            models.Index(fields=["rule", "status"], name="training_run_by_rule"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} run {self.pk} ({self.status})"

    @property
    def progress(self) -> float:
        """Return the share of planned steps done (0 before the total is known)."""
        return self.step / self.total_steps if self.total_steps else 0.0


class TrainingMetric(models.Model):
    """Metrics a run logged at one step: the training ones, or the held-out (`eval`) ones."""

    class Split(models.TextChoices):
        TRAIN = "train", "Training"
        EVAL = "eval", "Held out"

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="metrics")
    step = models.PositiveIntegerField()
    split = models.CharField(max_length=8, choices=Split.choices)
    values = models.JSONField(help_text="Metric name -> number, as the trainer logged them.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "step", "split"]
        constraints = [
            # A resumed run logs the steps after its checkpoint again: the newer values replace these.
            models.UniqueConstraint(
                fields=["run", "step", "split"], name="training_metric_one_per_step"
            ),
            models.CheckConstraint(
                condition=Q(split__in=["train", "eval"]), name="training_metric_split_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.run_id} step {self.step} ({self.split})"


class TrainingLogLine(models.Model):
    """One line of a run's log, shown on its page."""

    class Level(models.TextChoices):
        INFO = "info", "Info"
        WARNING = "warning", "Warning"
        ERROR = "error", "Error"

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="log_lines")
    level = models.CharField(max_length=8, choices=Level.choices, default=Level.INFO)
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(level__in=["info", "warning", "error"]), name="training_log_level_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.run_id}: {self.message[:60]}"


class TrainingRule(models.Model):
    """Start a reward-model run on a fresh snapshot every N judgments, or when the campaign closes.

    At most one of a rule's runs is queued or running at a time; a threshold passed while one is
    fires once that run has ended, at the next judgment.
    """

    class Kind(models.TextChoices):
        EVERY_N_JUDGMENTS = "every_n_judgments", "Every N judgments"
        ON_CLOSE = "on_close", "When the campaign closes"

    campaign = models.ForeignKey(
        "annotation.Campaign", on_delete=models.CASCADE, related_name="training_rules"
    )
    kind = models.CharField(max_length=24, choices=Kind.choices)
    n = models.PositiveIntegerField(
        null=True, blank=True, help_text="Judgments between runs (every_n_judgments)."
    )
    dataset_method = models.CharField(
        max_length=32, default="dawid_skene", help_text="Aggregation of the snapshot."
    )
    dataset_params = models.JSONField(default=dict, blank=True)
    base_model_path = models.CharField(max_length=1000)
    config = models.JSONField(
        default=dict, blank=True, help_text="Reward-model config (output_dir is set per run)."
    )
    gpus = models.PositiveSmallIntegerField(default=0)
    is_active = models.BooleanField(default=True)
    last_fired_count = models.PositiveIntegerField(
        default=0, help_text="The campaign's judgment count when the rule last started a run."
    )
    last_error = models.TextField(
        blank=True, help_text="Why the rule could not start its last run, if it could not."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="training_rules_created",
        help_text="A manager of the campaign: the snapshots and runs are made in their name.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["campaign", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["every_n_judgments", "on_close"]),
                name="training_rule_kind_valid",
            ),
            models.CheckConstraint(
                condition=~Q(kind="every_n_judgments") | Q(n__gte=1),
                name="training_rule_every_n_has_n",
            ),
        ]
        indexes = [
            # The judging hot path asks "does this campaign have an active rule of this kind?".
            models.Index(fields=["campaign", "kind", "is_active"], name="training_rule_lookup"),
        ]

    def __str__(self) -> str:
        what = (
            f"every {self.n} judgments" if self.kind == self.Kind.EVERY_N_JUDGMENTS else "on close"
        )
        return f"rule {self.pk}: {self.campaign} {what}"
