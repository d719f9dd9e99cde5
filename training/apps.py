from django.apps import AppConfig


class TrainingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "training"
    verbose_name = "Training"

    def ready(self) -> None:
        # Annotation announces judgments and closings through its hooks; it never imports training.
        from annotation import hooks
        from training.services import training_rules_after_judgment, training_rules_on_close

        hooks.on_judgment_recorded(training_rules_after_judgment)
        hooks.on_campaign_closed(training_rules_on_close)
