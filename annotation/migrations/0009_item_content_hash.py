"""Item.content_hash: the normalized content of each item, indexed per campaign, for duplicates."""

from django.db import migrations, models

from annotation.core.importing import content_hash


def fill_content_hashes(apps, schema_editor):
    """Compute the hash of every stored item from its prompt and its replies, in batches."""
    Item = apps.get_model("annotation", "Item")
    ItemResponse = apps.get_model("annotation", "ItemResponse")
    pks = list(Item.objects.order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(pks), 2000):
        batch = list(Item.objects.filter(pk__in=pks[start : start + 2000]).select_related("prompt"))
        replies: dict[int, list[str]] = {}
        for item_id, content in ItemResponse.objects.filter(item__in=batch).order_by("position").values_list(
            "item_id", "response__content"
        ):
            replies.setdefault(item_id, []).append(content)
        for item in batch:
            item.content_hash = content_hash(item.prompt.messages, replies.get(item.pk, []))
        Item.objects.bulk_update(batch, ["content_hash"])


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0008_dataset_comparison_undecided"),
    ]

    operations = [
        migrations.AddField(
            model_name="item",
            name="content_hash",
            field=models.CharField(
                blank=True,
                default="",
                help_text="SHA-256 of the normalized conversation and replies (annotation.core.importing.content_hash); "
                "finds an imported duplicate with one indexed query.",
                max_length=64,
            ),
        ),
        migrations.AddIndex(
            model_name="item",
            index=models.Index(fields=["campaign", "content_hash"], name="item_content_hash"),
        ),
        migrations.RunPython(fill_content_hashes, migrations.RunPython.noop),
    ]
