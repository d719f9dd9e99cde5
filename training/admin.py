from django.contrib import admin

from training.models import TrainingLogLine, TrainingMetric, TrainingRule, TrainingRun
from training.rules import training_rules_announce_sync


class TrainingMetricInline(admin.TabularInline):
    model = TrainingMetric
    extra = 0
    can_delete = False
    fields = ["step", "split", "values", "created_at"]
    readonly_fields = fields


class TrainingLogLineInline(admin.TabularInline):
    model = TrainingLogLine
    extra = 0
    can_delete = False
    fields = ["created_at", "level", "message"]
    readonly_fields = fields


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "kind",
        "status",
        "campaign",
        "dataset",
        "step",
        "total_steps",
        "gpus",
        "created_by",
        "queued_at",
        "finished_at",
    ]
    list_filter = ["kind", "status", "queued_at"]
    search_fields = ["id", "base_model_path", "error"]
    raw_id_fields = ["dataset", "campaign", "rule", "created_by"]
    # Runs change through the services and the worker: an existing run is shown, not edited.
    run_fields = [
        "kind",
        "dataset",
        "campaign",
        "rule",
        "base_model_path",
        "config",
        "status",
        "step",
        "total_steps",
        "summary",
        "artifacts",
        "error",
        "gpus",
        "auto_resumes",
        "celery_task_id",
        "worker",
        "created_by",
        "queued_at",
        "started_at",
        "finished_at",
        "heartbeat_at",
    ]
    inlines = [TrainingMetricInline, TrainingLogLineInline]

    def get_readonly_fields(self, request, obj=None):
        return self.run_fields if obj is not None else []


@admin.register(TrainingRule)
class TrainingRuleAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "campaign",
        "kind",
        "n",
        "is_active",
        "last_fired_count",
        "created_by",
        "created_at",
    ]
    list_filter = ["kind", "is_active"]
    raw_id_fields = ["campaign", "created_by"]
    readonly_fields = ["last_fired_count", "last_error", "created_at"]

    # A rule changed here, as in training.rules, keeps its campaign's `announce_judgments` flag.
    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and "campaign" in form.changed_data:
            training_rules_announce_sync(campaign_id=form.initial["campaign"])
        training_rules_announce_sync(campaign_id=obj.campaign_id)

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        training_rules_announce_sync(campaign_id=obj.campaign_id)

    def delete_queryset(self, request, queryset):
        campaign_ids = set(queryset.values_list("campaign_id", flat=True))
        super().delete_queryset(request, queryset)
        for campaign_id in campaign_ids:
            training_rules_announce_sync(campaign_id=campaign_id)
