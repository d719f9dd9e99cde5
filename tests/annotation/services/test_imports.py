"""Importing into a campaign: all or nothing, duplicates, and the real HH file."""

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotation.core.importing import content_hash
from annotation.errors import ConflictError
from annotation.models import Campaign, Item, ItemResponse, Prompt, Response
from annotation.services.campaigns import campaign_set_status
from annotation.services.imports import ImportRejected, items_import
from tests.conftest import hh_file, jsonl, pair_rows

pytestmark = pytest.mark.django_db


def test_import_creates_prompts_responses_and_items_in_order(make_campaign):
    campaign = make_campaign(items=0, active=False)
    result = items_import(campaign=campaign, lines=jsonl(pair_rows(3)))
    assert (result.items, result.responses, result.formats) == (3, 6, {"arbiter": 3})
    item = Item.objects.get(campaign=campaign, prompt__external_id="p1")
    assert [ir.response.content for ir in item.item_responses.select_related("response")] == [
        "Answer one to 1", "Answer two to 1"
    ]
    assert [ir.response.model_name for ir in item.item_responses.all()] == ["model-x", "model-y"]
    assert item.target == campaign.overlap and item.judgment_count == 0


def test_one_bad_line_imports_nothing_and_reports_every_bad_line(make_campaign):
    campaign = make_campaign(items=2, active=False)
    lines = jsonl(pair_rows(3, prefix="new")) + ["{oops"] + jsonl([{"prompt": "q", "chosen": "a"}])
    with pytest.raises(ImportRejected) as exc:
        items_import(campaign=campaign, lines=lines)
    assert exc.value.extra["error_count"] == 2
    assert [e["line"] for e in exc.value.extra["errors"]] == [4, 5]
    assert "2 bad line(s) of 5; nothing was imported." == exc.value.message
    assert Prompt.objects.filter(campaign=campaign).count() == 2  # what was stored before is intact


def test_ids_already_in_the_campaign_are_rejected(make_campaign):
    """An id already stored is a bad line, even when the texts are new."""
    campaign = make_campaign(items=2, active=False)
    row = {**pair_rows(1, prefix="new")[0], "id": "p0"}
    with pytest.raises(ImportRejected) as exc:
        items_import(campaign=campaign, lines=jsonl([row]))
    assert exc.value.extra["errors"] == [{"line": 1, "message": "id 'p0' is already in this campaign"}]


def test_gold_answer_is_stored_with_the_response_id(make_campaign):
    campaign = make_campaign(items=0, active=False)
    row = {**pair_rows(1)[0], "gold": {"preferred": 1}}
    items_import(campaign=campaign, lines=jsonl([row]))
    item = Item.objects.get(campaign=campaign)
    second = item.item_responses.get(position=1).response_id
    assert item.is_gold and item.gold == {"outcome": "preferred", "preferred_response_id": second}


def test_closed_campaign_refuses_imports(make_campaign):
    campaign = make_campaign(items=1)
    campaign_set_status(campaign=campaign, status=Campaign.Status.CLOSED)
    with pytest.raises(ConflictError, match="closed"):
        items_import(campaign=campaign, lines=jsonl(pair_rows(1, prefix="z")))


def test_hh_file_imports_1500_pairwise_items(make_campaign):
    """The 1,500 HH pairs become 1,500 items with the shared conversation and the two replies."""
    HH_FILE = hh_file()
    campaign = make_campaign(items=0, active=False)
    with HH_FILE.open("rb") as fh:
        result = items_import(campaign=campaign, lines=fh)
    assert result.items == 1500
    assert Item.objects.filter(campaign=campaign).count() == 1500
    assert ItemResponse.objects.filter(item__campaign=campaign).count() == 3000
    first = json.loads(HH_FILE.open().readline())
    prompt = Prompt.objects.filter(campaign=campaign).order_by("pk").first()
    assert prompt.messages[0] == {"role": "user", "content": "what are some pranks with a pen i can do?"}
    assert len(prompt.messages) == 5
    chosen, rejected = (ir.response for ir in prompt.items.get().item_responses.select_related("response"))
    assert first["chosen"].endswith("\n\nAssistant: " + chosen.content)
    assert first["rejected"].endswith("\n\nAssistant: " + rejected.content)
    assert chosen.metadata == {"source_label": "chosen"}


def test_import_command_reports_bad_lines(make_campaign, tmp_path, capsys):
    campaign = make_campaign(items=0, active=False)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(jsonl(pair_rows(2)) + ["nope"]))
    with pytest.raises(CommandError, match="1 bad line"):
        call_command("import_items", campaign.pk, str(bad))
    assert "line 3: not valid JSON" in capsys.readouterr().err
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(jsonl(pair_rows(2))))
    call_command("import_items", campaign.pk, str(good))
    assert Response.objects.filter(prompt__campaign=campaign).count() == 4


STORED_DUPLICATE = (
    "duplicate of an item already in this campaign: the same conversation and replies after Unicode NFC "
    "normalization and trimming outer whitespace; remove it, or choose to skip duplicates"
)


def test_a_duplicate_of_a_stored_item_is_a_bad_line_and_nothing_is_stored(make_campaign):
    """Same conversation and replies as a stored item (new id, extra spaces) refuses the file by default."""
    campaign = make_campaign(items=2, active=False)
    again = {**pair_rows(2)[1], "id": "again"}
    again["responses"] = [{"content": f"  {r['content']}\n", "model": "m"} for r in again["responses"]]
    with pytest.raises(ImportRejected) as exc:
        items_import(campaign=campaign, lines=jsonl([*pair_rows(1, prefix="new"), again]))
    assert exc.value.extra["errors"] == [{"line": 2, "message": STORED_DUPLICATE}]
    assert Prompt.objects.filter(campaign=campaign).count() == 2


def test_skipping_duplicates_imports_the_rest_and_lists_what_was_skipped(make_campaign):
    """With skip_duplicates, stored and in-file repeats are left out, counted, named and audited."""
    campaign = make_campaign(items=2, active=False)
    stored = {**pair_rows(1)[0], "id": "other-id"}
    new = pair_rows(2, prefix="new")
    result = items_import(
        campaign=campaign, lines=jsonl([new[0], stored, new[1], {**new[0], "id": "x"}]), skip_duplicates=True
    )
    assert (result.items, result.skipped_count) == (2, 2)
    assert result.skipped == [
        (2, "duplicate of an item already in this campaign"),
        (4, "duplicate of line 1 (same conversation and replies)"),
    ]
    assert Item.objects.filter(campaign=campaign).count() == 4
    campaign.refresh_from_db()
    assert campaign.item_count == 4
    assert campaign.audit_entries.filter(action="import.commit").latest("pk").after["skipped_duplicates"] == 2


def test_only_duplicates_with_skip_imports_nothing_and_says_so(make_campaign):
    """A file of nothing but stored items, skipped, is refused rather than 'imported' empty."""
    campaign = make_campaign(items=2, active=False)
    rows = [{**r, "id": f"x{i}"} for i, r in enumerate(pair_rows(2))]
    with pytest.raises(ImportRejected) as exc:
        items_import(campaign=campaign, lines=jsonl(rows), skip_duplicates=True)
    assert exc.value.extra["errors"] == [
        {"line": 0, "message": "every item in the file is already in this campaign; nothing to import"}
    ]
    assert Item.objects.filter(campaign=campaign).count() == 2


def test_each_item_stores_its_content_hash_for_the_indexed_duplicate_check(make_campaign):
    """The hash on each item is the core's hash of its normalized conversation and replies."""
    campaign = make_campaign(items=1, active=False)
    item = Item.objects.get(campaign=campaign)
    assert item.content_hash == content_hash([{"role": "user", "content": "Question 0?"}],
                                             ["Answer one to 0", "Answer two to 0"])
    assert any(ix.name == "item_content_hash" for ix in Item._meta.indexes)


def test_near_duplicate_of_a_stored_prompt_is_a_warning_and_imports(make_campaign):
    """A prompt the campaign already has, with new replies, imports with a warning naming the stored prompt."""
    campaign = make_campaign(items=1, active=False)
    row = {"id": "n1", "prompt": "question 0?", "chosen": "New one", "rejected": "New two"}
    result = items_import(campaign=campaign, lines=jsonl([row]))
    assert result.items == 1 and result.warning_count == 1
    assert result.warnings == [(1, "prompt is a near-duplicate of prompt 'p0' already in this campaign "
                                   "(Jaccard >= 0.9 on word 5-shingles, found with MinHash LSH (64 permutations))")]


def test_size_caps_come_from_settings(make_campaign, settings):
    settings.ARBITER_IMPORT_MAX_REPLY_BYTES = 10
    campaign = make_campaign(items=0, active=False)
    with pytest.raises(ImportRejected) as exc:
        items_import(campaign=campaign, lines=jsonl([{"prompt": "q", "chosen": "a" * 11, "rejected": "b"}]))
    assert exc.value.extra["errors"] == [
        {"line": 1, "message": "chosen: 11 bytes, more than the 10 byte limit per reply"}
    ]
    assert not Item.objects.filter(campaign=campaign).exists()


def test_the_migration_fills_the_hash_of_items_stored_before_it(make_campaign):
    """Items from before the hash existed get it from their prompt and replies, so they are found as duplicates."""
    import importlib

    from django.apps import apps

    fill = importlib.import_module("annotation.migrations.0009_item_content_hash").fill_content_hashes
    campaign = make_campaign(items=3, active=False)
    expected = dict(Item.objects.filter(campaign=campaign).values_list("pk", "content_hash"))
    Item.objects.filter(campaign=campaign).update(content_hash="")
    fill(apps, None)
    assert dict(Item.objects.filter(campaign=campaign).values_list("pk", "content_hash")) == expected
    with pytest.raises(ImportRejected, match="1 bad line"):
        items_import(campaign=campaign, lines=jsonl([{**pair_rows(3)[2], "id": "again"}]))


def test_ids_of_deleted_rows_are_not_reused_and_links_point_at_their_own_rows(make_campaign):
    """Rows written in bulk take fresh ids (never a deleted row's) and each item links its own replies."""
    campaign = make_campaign(items=2, active=False)
    last = Item.objects.filter(campaign=campaign).order_by("-pk").first()
    gone = (last.pk, last.prompt_id)
    last.prompt.delete()
    items_import(campaign=campaign, lines=jsonl(pair_rows(2, prefix="fresh")))
    fresh = Item.objects.filter(campaign=campaign, prompt__external_id__startswith="fresh")
    assert all(i.pk > gone[0] and i.prompt_id > gone[1] for i in fresh)
    for item in fresh:
        assert [ir.response.prompt_id for ir in item.item_responses.select_related("response")] == [item.prompt_id] * 2


def test_metadata_values_keep_their_json_types(make_campaign):
    """Equal-comparing metadata of different types (1, 1.0, true) is stored as each line wrote it."""
    campaign = make_campaign(items=0, active=False)
    rows = [{**r, "metadata": {"v": v}} for r, v in zip(pair_rows(3), (1, 1.0, True), strict=True)]
    items_import(campaign=campaign, lines=jsonl(rows))
    stored = [p.metadata["v"] for p in Prompt.objects.filter(campaign=campaign).order_by("pk")]
    assert stored == [1, 1.0, True] and [type(v) for v in stored] == [int, float, bool]
