from django.contrib import admin

from training.models import TrainingLogLine, TrainingMetric, TrainingRule, TrainingRun


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
