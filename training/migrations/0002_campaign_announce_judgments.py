"""Set Campaign.announce_judgments where the campaign has an active every-N-judgments rule.

Serving announces a judgment (annotation.hooks) only for a campaign with the flag set, and
training's rule services keep it current from here on.
"""

from django.db import migrations
from django.db.models import Exists, OuterRef


def set_flags(apps, schema_editor) -> None:
    Campaign = apps.get_model("annotation", "Campaign")
    TrainingRule = apps.get_model("training", "TrainingRule")
    rules = TrainingRule.objects.filter(campaign=OuterRef("pk"), kind="every_n_judgments", is_active=True)
    Campaign.objects.update(announce_judgments=Exists(rules))


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "0006_campaign_announce_judgments"),
        ("training", "0001_initial"),
    ]

    operations = [migrations.RunPython(set_flags, migrations.RunPython.noop)]
