from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "0005_serving_functions"),
    ]

    operations = [
        migrations.AddField(
            model_name="campaign",
            name="announce_judgments",
            field=models.BooleanField(
                default=False,
                help_text="Announce each stored judgment to the apps that listen (annotation.hooks); kept by them.",
            ),
        ),
    ]
