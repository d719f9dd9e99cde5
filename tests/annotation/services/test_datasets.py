"""Datasets: immutable, versioned snapshots of a campaign's aggregated comparisons, built from
real judgments made through the services."""

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse

from annotation.errors import ApplicationError, ForbiddenError
from annotation.models import (
    Campaign,
    Dataset,
    DatasetComparison,
    ItemResponse,
    Judgment,
    Response,
    Role,
)
from annotation.pseudonyms import annotator_pseudonym
from annotation.selectors import snapshot_judgments
from annotation.services.campaigns import campaign_create, campaign_set_status, membership_add
from annotation.services.datasets import (
    dataset_build,
    dataset_create,
    dataset_params_clean,
    dataset_verify_hash,
)
from annotation.services.imports import items_import
from tests.annotation.support import build, judge_all, prefer
from tests.conftest import jsonl

pytestmark = pytest.mark.django_db


@pytest.fixture
def judged(make_campaign, annotator, annotator2, researcher):
    """5 pairwise items, overlap 2, a researcher member: both annotators prefer model-x (strength 3 and 1)."""
    campaign = make_campaign(items=5, overlap=2, annotators=[annotator, annotator2])
    membership_add(campaign=campaign, user=researcher, role=Role.RESEARCHER)
    judge_all(campaign, annotator, prefer("model-x", strength=3))
    judge_all(campaign, annotator2, prefer("model-x", strength=1))
    return campaign


# --- building -----------------------------------------------------------------------------------------


def test_snapshot_from_real_judgments_counts_rows_and_hash(judged, manager):
    """Each item becomes one comparison: model-x chosen, margin = mean agreeing strength, counts filled in."""
    ds = build(judged, manager)
    assert ds.status == Dataset.Status.READY, ds.error
    assert (ds.version, ds.item_count, ds.comparison_count, ds.judgment_count, ds.annotator_count) == (1, 5, 5, 10, 2)
    assert len(ds.content_hash) == 64 and dataset_verify_hash(ds)
    rows = list(DatasetComparison.objects.filter(dataset=ds).order_by("position"))
    assert [r.position for r in rows] == list(range(5))
    for r in rows:
        assert (r.chosen_model, r.rejected_model, r.outcome) == ("model-x", "model-y", "chosen")
        assert r.margin == pytest.approx(2.0) and r.confidence == pytest.approx(1.0) and r.n_judgments == 2
        assert r.chosen_text == Response.objects.get(pk=r.chosen_response_id).content
        assert r.prompt == r.item.prompt.messages
    assert ds.last_judgment_id == Judgment.objects.latest("pk").pk
    assert ds.finished_at is not None and ds.error == ""


def test_stats_and_leaderboard_are_filled_in(judged, manager):
    ds = build(judged, manager, method="dawid_skene")
    stats = ds.stats
    assert stats["agreement"]["krippendorff_alpha_nominal"] == 1.0
    assert stats["agreement"]["items_with_two_or_more"] == 5
    assert stats["position_bias"]["decisive"] == 10
    assert stats["consensus"]["outcomes"] == {"chosen": 5, "tie": 0, "undecided": 0}
    assert sum(b["count"] for b in stats["consensus"]["confidence"]["histogram"]) == 5
    pseudonyms = {a["annotator"] for a in stats["annotators"]}
    assert all(p.startswith("a_") for p in pseudonyms) and len(pseudonyms) == 2
    assert "'ann'" not in str(stats) and "'ann2'" not in str(stats)  # usernames never leave as such
    board = ds.leaderboard
    assert [r["model"] for r in board["rows"]] == ["model-x", "model-y"]
    top = board["rows"][0]
    assert top["ci_low"] <= top["score"] <= top["ci_high"] and top["n"] == 10 and top["rank"] == 1
    assert board["prior"] > 0 and "regularized" in board["note"]  # model-y never won: a prior keeps it finite


def test_hash_is_stable_across_rebuilds_and_versions_increment(judged, manager):
    """The same judgments give the same rows and the same hash; each dataset is the next version."""
    first = build(judged, manager)
    second = build(judged, manager)
    third = build(judged, manager, method="reliability_weighted")
    assert [first.version, second.version, third.version] == [1, 2, 3]
    assert first.content_hash == second.content_hash == third.content_hash
    assert first.pk != second.pk and DatasetComparison.objects.filter(dataset=second).count() == 5


def test_a_new_judgment_changes_the_next_snapshot_not_the_old_one(judged, manager, make_user):
    old = build(judged, manager)
    third = make_user("ann3", Role.ANNOTATOR)
    membership_add(campaign=judged, user=third, role=Role.ANNOTATOR)
    judged.items.update(target=3)
    Campaign.objects.filter(pk=judged.pk).update(overlap=3)
    judge_all(judged, third, prefer("model-y"))
    new = build(judged, manager)
    assert new.content_hash != old.content_hash and new.judgment_count == 15
    old.refresh_from_db()
    assert old.judgment_count == 10 and dataset_verify_hash(old)
    assert snapshot_judgments(campaign_id=judged.pk, last_judgment_id=old.last_judgment_id).count() == 10


def test_superseded_judgments_are_not_used(judged, manager, annotator):
    """A correction replaces the judgment it supersedes."""
    original = Judgment.objects.filter(annotator=annotator).order_by("pk").first()
    other = ItemResponse.objects.filter(item_id=original.item_id).exclude(
        response_id=original.preferred_response_id).get().response_id
    Judgment.objects.create(
        campaign=judged, item_id=original.item_id, assignment=original.assignment, annotator=annotator,
        outcome="preferred", preferred_response_id=other, strength=1, display_order=original.display_order,
        campaign_version=1, supersedes=original,
    )
    ds = build(judged, manager)
    assert ds.judgment_count == 10  # 10 current: 9 originals + the correction
    row = DatasetComparison.objects.get(dataset=ds, item_id=original.item_id)
    assert row.outcome == "tie" and row.margin == 0 and row.confidence == pytest.approx(0.5)


def test_gold_judgments_weigh_annotators_but_are_not_comparisons(manager, annotator, annotator2):
    campaign = campaign_create(created_by=manager, name="gold", overlap=2, gold_rate=1.0)  # gold first, always
    rows = [{"id": f"g{i}", "messages": [{"role": "user", "content": f"G{i}"}],
             "responses": [{"content": "good", "model": "model-x"}, {"content": "bad", "model": "model-y"}],
             "gold": {"preferred": 0}} for i in range(2)]
    rows += [{"id": f"p{i}", "messages": [{"role": "user", "content": f"Q{i}"}],
              "responses": [{"content": f"x{i}", "model": "model-x"}, {"content": f"y{i}", "model": "model-y"}]}
             for i in range(3)]
    items_import(campaign=campaign, lines=jsonl(rows))
    campaign_set_status(campaign=campaign, status="active")
    for user in (annotator, annotator2):
        membership_add(campaign=campaign, user=user, role=Role.ANNOTATOR)
        judge_all(campaign, user, prefer("model-x"))
    assert Judgment.objects.filter(item__is_gold=True).count() == 4
    ds = build(campaign, manager, method="reliability_weighted")
    assert ds.status == "ready", ds.error
    assert (ds.item_count, ds.comparison_count, ds.judgment_count) == (3, 3, 6)
    assert not DatasetComparison.objects.filter(dataset=ds, item__is_gold=True).exists()
    accuracy = {a["annotator"]: (a["gold_correct"], a["gold_total"]) for a in ds.stats["annotators"]}
    assert accuracy == {annotator_pseudonym(annotator.pk): (2, 2), annotator_pseudonym(annotator2.pk): (2, 2)}


def test_ranking_is_expanded_into_pairs_with_rank_gap_margins(manager, annotator, annotator2):
    """A 3-response ranking gives 3 pairs per item; the margin is how many groups apart they are."""
    campaign = campaign_create(created_by=manager, name="ranking", kind="ranking", overlap=2)
    rows = [{"id": f"q{i}", "messages": [{"role": "user", "content": f"Q{i}"}],
             "responses": [{"content": f"reply {m} {i}", "model": m} for m in ("m0", "m1", "m2")]} for i in range(2)]
    items_import(campaign=campaign, lines=jsonl(rows))
    campaign_set_status(campaign=campaign, status="active")

    def ranked(item_id, by_model):  # m2 > m1 > m0
        return {"outcome": "ranked", "ranking": [[by_model["m2"]], [by_model["m1"]], [by_model["m0"]]]}

    for user in (annotator, annotator2):
        membership_add(campaign=campaign, user=user, role=Role.ANNOTATOR)
        judge_all(campaign, user, ranked)
    ds = build(campaign, manager)
    assert ds.status == "ready", ds.error
    assert (ds.item_count, ds.comparison_count, ds.judgment_count, ds.annotator_count) == (2, 6, 4, 2)
    got = sorted((r.chosen_model, r.rejected_model, r.margin, r.n_judgments)
                 for r in DatasetComparison.objects.filter(dataset=ds, item__prompt__external_id="q0"))
    assert got == [("m1", "m0", 1.0, 2), ("m2", "m0", 2.0, 2), ("m2", "m1", 1.0, 2)]
    assert [r["model"] for r in ds.leaderboard["rows"]] == ["m2", "m1", "m0"]
    assert ds.stats["position_bias"]["decisive"] == 0  # rankings have no left/right


def test_rating_is_expanded_by_score_difference(manager, annotator):
    criteria = [{"name": "helpfulness", "scale": {"min": 1, "max": 5}}, {"name": "honesty", "scale": {"min": 1, "max": 5}}]
    campaign = campaign_create(created_by=manager, name="rating", kind="rating", criteria=criteria)
    rows = [{"id": "q0", "messages": [{"role": "user", "content": "Q"}],
             "responses": [{"content": "a", "model": "ma"}, {"content": "b", "model": "mb"}]}]
    items_import(campaign=campaign, lines=jsonl(rows))
    campaign_set_status(campaign=campaign, status="active")
    membership_add(campaign=campaign, user=annotator, role=Role.ANNOTATOR)

    def rate(item_id, by_model):
        return {"outcome": "rated", "ratings": {str(by_model["ma"]): {"helpfulness": 2, "honesty": 4},
                                                str(by_model["mb"]): {"helpfulness": 5, "honesty": 5}}}

    judge_all(campaign, annotator, rate)
    mean = build(campaign, manager)
    (row,) = DatasetComparison.objects.filter(dataset=mean)
    assert (row.chosen_model, row.margin) == ("mb", 2.0)  # means 5 vs 3
    honesty = build(campaign, manager, rating_criterion="honesty")
    (row,) = DatasetComparison.objects.filter(dataset=honesty)
    assert (row.chosen_model, row.margin) == ("mb", 1.0)
    bad = build(campaign, manager, rating_criterion="wit")
    assert bad.status == "failed" and bad.error == (
        "params.rating_criterion: 'wit' is not a criterion of this campaign's ratings")


def test_failure_is_recorded_with_its_message(make_campaign, manager):
    """Nothing to aggregate: the dataset is failed with a message that says what to do, and has no rows."""
    campaign = make_campaign(items=2)
    ds = build(campaign, manager)
    assert ds.status == Dataset.Status.FAILED and ds.finished_at is not None
    assert ds.error.startswith("There is nothing to aggregate yet")
    assert not DatasetComparison.objects.filter(dataset=ds).exists() and ds.content_hash == ""


def test_unexpected_errors_are_recorded_too(judged, manager, monkeypatch):
    from annotation.services import datasets

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(datasets, "snapshot_leaderboard", boom)
    ds = build(judged, manager)
    assert ds.status == "failed" and ds.error == "The build failed unexpectedly (RuntimeError: disk on fire)."


def test_a_built_dataset_is_never_rebuilt(judged, manager, monkeypatch):
    """A task delivered twice finds the dataset ready and changes nothing."""
    ds = build(judged, manager)
    from annotation.services import datasets

    monkeypatch.setattr(datasets, "_compute", lambda d: pytest.fail("rebuilt a ready dataset"))
    again = dataset_build(dataset_id=ds.pk)
    assert again.content_hash == ds.content_hash and again.status == "ready"


def test_rows_are_immutable_in_the_database(judged, manager):
    """No update path exists; the database refuses a second row for the same pair or position too."""
    ds = build(judged, manager)
    row = DatasetComparison.objects.filter(dataset=ds).first()
    with pytest.raises(IntegrityError), transaction.atomic():
        DatasetComparison.objects.create(
            dataset=ds, position=99, item=row.item, prompt=row.prompt, chosen_response=row.chosen_response,
            rejected_response=row.rejected_response, outcome="chosen", margin=1, confidence=1, n_judgments=1,
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        Dataset.objects.create(campaign=judged, version=1, method="majority", campaign_version=1, created_by=manager)
    import annotation.services.datasets as service

    assert not [n for n in dir(service) if n.startswith("dataset_") and n.endswith(("update", "delete"))]


# --- creating -----------------------------------------------------------------------------------------


def test_create_queues_the_build_after_commit(judged, manager, settings, django_capture_on_commit_callbacks):
    """With an eager Celery, the build runs when the creating transaction commits."""
    from config.celery import app

    settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            ds = dataset_create(campaign=judged, method="majority", params={"bootstrap_rounds": 20},
                                created_by=manager)
            assert Dataset.objects.get(pk=ds.pk).status == "building"
    finally:
        app.conf.task_always_eager = False
    # The build is queued once, after commit (the audit entry also tells open dashboards).
    assert [c.__qualname__.split(".")[0] for c in callbacks].count("dataset_create") == 1
    ds.refresh_from_db()
    assert ds.status == "ready" and ds.comparison_count == 5


def test_only_the_campaigns_managers_create(judged, researcher, make_user):
    with pytest.raises(ForbiddenError, match="Only the campaign's managers create datasets."):
        dataset_create(campaign=judged, method="majority", params={}, created_by=researcher)
    other = make_user("other", Role.MANAGER)
    with pytest.raises(ForbiddenError):
        dataset_create(campaign=judged, method="majority", params={}, created_by=other)


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        ("median", {}, "method: must be one of majority, dawid_skene, reliability_weighted"),
        ("majority", {"prior_accuracy": 0.7}, "params.prior_accuracy: is not a parameter of majority"),
        ("reliability_weighted", {"prior_accuracy": 0.2}, "params.prior_accuracy: must be a number between 1/3 and 1"),
        ("dawid_skene", {"max_iter": "ten"}, "params.max_iter: must be an integer from 1 to 1000, not 'ten'"),
        ("majority", {"both_bad": "maybe"}, "params.both_bad: must be 'tie' (both bad counts as a tie) or 'drop'"),
        ("majority", [1, 2], "params: must be an object"),
        ("majority", {"min_confidence": 1.5}, "params.min_confidence: must be a number from 0 to 1"),
        ("majority", {"min_confidence": "high"}, "params.min_confidence: must be a number from 0 to 1"),
        ("dawid_skene", {"min_judgments": 0}, "params.min_judgments: must be an integer from 1 to 100"),
        ("majority", {"min_judgments": 2.5}, "params.min_judgments: must be an integer from 1 to 100"),
        ("majority", {"flag_min_annotators": 0}, "params.flag_min_annotators: must be an integer from 1 to 100"),
        ("majority", {"keep_flagged": "yes"}, "params.keep_flagged: must be true or false"),
    ],
)
def test_bad_parameters_name_the_field(method, params, message):
    with pytest.raises(ApplicationError) as exc:
        dataset_params_clean(method=method, params=params)
    assert exc.value.message.startswith(message)


def test_parameters_are_stored_complete():
    assert dataset_params_clean(method="reliability_weighted", params={"seed": 3}) == {
        "both_bad": "tie", "bootstrap_rounds": 1000, "include_ties": True, "max_iter": 100, "prior_accuracy": 0.6,
        "prior_strength": 4.0, "rating_criterion": None, "rating_tie_tolerance": 0.0, "seed": 3, "use_gold": True,
        "min_confidence": 0.6, "min_judgments": 2, "flag_min_annotators": 1, "keep_flagged": False,
    }


def test_ties_can_be_left_out(make_campaign, manager, annotator):
    campaign = make_campaign(items=2, annotators=[annotator])
    judge_all(campaign, annotator, lambda item_id, by_model: {"outcome": "tie"})
    kept = build(campaign, manager)
    assert kept.comparison_count == 2
    assert kept.stats["consensus"]["outcomes"] == {"chosen": 0, "tie": 2, "undecided": 0}
    dropped = build(campaign, manager, include_ties=False)
    assert dropped.status == "failed" and "include_ties is off" in dropped.error


# --- API ------------------------------------------------------------------------------------------------


def test_api_create_list_detail(judged, manager, researcher, client_for, django_capture_on_commit_callbacks):
    url = reverse("api:dataset_create", kwargs={"campaign_id": judged.pk})
    with django_capture_on_commit_callbacks(execute=False):
        res = client_for(manager).post(url, {"method": "majority", "params": {"bootstrap_rounds": 10}}, format="json")
    assert res.status_code == 201, res.content
    body = res.json()
    assert body["status"] == "building" and body["version"] == 1 and body["params"]["bootstrap_rounds"] == 10
    dataset_build(dataset_id=body["id"])
    listing = client_for(researcher).get(reverse("api:dataset_list", kwargs={"campaign_id": judged.pk}))
    assert listing.status_code == 200 and [d["id"] for d in listing.json()] == [body["id"]]
    detail = client_for(researcher).get(reverse("api:dataset_detail", kwargs={"dataset_id": body["id"]})).json()
    assert detail["status"] == "ready" and detail["counts"] == {
        "items": 5, "comparisons": 5, "judgments": 10, "annotators": 2}
    assert detail["leaderboard"]["rows"][0]["model"] == "model-x" and "agreement" in detail["stats"]
    board = client_for(researcher).get(reverse("api:dataset_leaderboard", kwargs={"dataset_id": body["id"]}))
    assert board.status_code == 200 and board.json()["rows"][0]["rank"] == 1


def test_api_create_names_bad_parameters(judged, manager, client_for):
    url = reverse("api:dataset_create", kwargs={"campaign_id": judged.pk})
    res = client_for(manager).post(url, {"method": "majority", "params": {"prior_strength": 2}}, format="json")
    assert res.status_code == 400
    assert res.json()["message"].startswith("params.prior_strength: is not a parameter of majority")
    assert not Dataset.objects.exists()


def test_researchers_never_write(judged, researcher, client_for):
    url = reverse("api:dataset_create", kwargs={"campaign_id": judged.pk})
    assert client_for(researcher).post(url, {"method": "majority"}, format="json").status_code == 403


def test_annotators_and_outsiders_cannot_read(judged, manager, annotator, outsider, client_for):
    ds = build(judged, manager)
    url = reverse("api:dataset_detail", kwargs={"dataset_id": ds.pk})
    assert client_for(annotator).get(url).status_code == 403
    res = client_for(outsider).get(url)
    assert res.status_code == 404 and res.json()["message"] == "Dataset not found."
    missing = client_for(manager).get(reverse("api:dataset_detail", kwargs={"dataset_id": ds.pk + 1000}))
    assert missing.status_code == 404


def test_openapi_lists_the_dataset_operations(client_for, annotator):
    import json as _json

    res = client_for(annotator).get(reverse("api:schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json")
    paths = _json.loads(res.content)["paths"]
    for path in ("/api/v1/campaigns/{campaign_id}/datasets/", "/api/v1/campaigns/{campaign_id}/datasets/create/",
                 "/api/v1/datasets/{dataset_id}/", "/api/v1/datasets/{dataset_id}/export/{kind}/",
                 "/api/v1/datasets/{dataset_id}/card/", "/api/v1/datasets/{dataset_id}/leaderboard/",
                 "/api/v1/campaigns/{campaign_id}/judgments/export/"):
        assert path in paths, path
    params = {p["name"] for p in paths["/api/v1/datasets/{dataset_id}/export/{kind}/"]["get"]["parameters"]}
    assert {"format", "kind", "dataset_id"} <= params


# --- pages -------------------------------------------------------------------------------------------------


def test_pages_list_create_and_show_the_leaderboard(judged, manager, researcher, client, django_capture_on_commit_callbacks):
    client.force_login(manager)
    detail = client.get(reverse("campaign_detail", kwargs={"campaign_id": judged.pk})).content.decode()
    assert reverse("campaign_datasets", kwargs={"campaign_id": judged.pk}) in detail
    url = reverse("campaign_datasets", kwargs={"campaign_id": judged.pk})
    page = client.get(url).content.decode()
    assert 'name="method"' in page and "No datasets yet" in page
    with django_capture_on_commit_callbacks(execute=False):
        res = client.post(url, {"method": "dawid_skene"})
    assert res.status_code == 302 and res.headers["Location"] == url
    ds = Dataset.objects.get()
    dataset_build(dataset_id=ds.pk)
    client.force_login(researcher)
    listing = client.get(url).content.decode()
    assert "v1" in listing and 'name="method"' not in listing  # researchers see no create form
    page = client.get(reverse("dataset_detail", kwargs={"dataset_id": ds.pk})).content.decode()
    assert "<svg" in page and "model-x" in page and 'data-testid="ci-bar"' in page
    assert reverse("api:dataset_export", kwargs={"dataset_id": ds.pk, "kind": "preference"}) in page
    assert "cdn" not in page.lower() and "<script src=\"http" not in page


def test_researcher_cannot_post_the_create_form(judged, researcher, client):
    client.force_login(researcher)
    res = client.post(reverse("campaign_datasets", kwargs={"campaign_id": judged.pk}), {"method": "majority"})
    assert res.status_code == 403 and not Dataset.objects.exists()


# --- no coin flips, flags -------------------------------------------------------------------------------


def _split_campaign(make_campaign, annotator, annotator2, items=4):
    """Overlap 2: annotator prefers model-x everywhere; annotator2 agrees on the first half of the items and
    prefers model-y on the rest (1–1 splits)."""
    campaign = make_campaign(items=items, overlap=2, annotators=[annotator, annotator2])
    judge_all(campaign, annotator, prefer("model-x"))
    ids = sorted(campaign.items.values_list("pk", flat=True))
    split = set(ids[len(ids) // 2:])
    judge_all(campaign, annotator2, lambda item_id, by_model: prefer(
        "model-y" if item_id in split else "model-x")(item_id, by_model))
    return campaign, split


@pytest.mark.parametrize("method", ["majority", "dawid_skene", "reliability_weighted"])
def test_a_one_one_split_is_never_exported_as_a_decided_pair(make_campaign, manager, annotator, annotator2, method):
    """Every 1–1 split is a tie or an undecided row (margin 0) at the defaults, under every method; the
    stats count it with its reason."""
    campaign, split = _split_campaign(make_campaign, annotator, annotator2)
    ds = build(campaign, manager, method=method)
    assert ds.status == "ready", ds.error
    rows = {c.item_id: c for c in DatasetComparison.objects.filter(dataset=ds)}
    for item_id in split:
        assert rows[item_id].outcome in ("tie", "undecided") and rows[item_id].margin == 0
    assert {rows[i].outcome for i in rows if i not in split} == {"chosen"}
    held = ds.stats["held_back"]
    assert held["tie"] + held["too_few_judgments"] + held["below_confidence"] == len(split)
    outcomes = ds.stats["consensus"]["outcomes"]
    assert outcomes["chosen"] == 2 and outcomes["tie"] + outcomes["undecided"] == 2


def test_thresholds_can_be_lowered_and_are_stored(make_campaign, manager, annotator, annotator2):
    """Lowered thresholds are stored with the dataset; majority still has no winner in a 1–1 split."""
    campaign, split = _split_campaign(make_campaign, annotator, annotator2)
    ds = build(campaign, manager, method="majority", min_judgments=1, min_confidence=0.0)
    assert ds.params["min_judgments"] == 1 and ds.params["min_confidence"] == 0.0
    # Majority still calls a 1–1 split a tie: there is no winner to decide.
    assert set(DatasetComparison.objects.filter(dataset=ds, item_id__in=split).values_list("outcome", flat=True)) == {
        "tie"}


def test_min_judgments_defaults_to_one_at_overlap_one(make_campaign, manager, annotator):
    campaign = make_campaign(items=3, overlap=1, annotators=[annotator])
    judge_all(campaign, annotator, prefer("model-x"))
    ds = build(campaign, manager)
    assert ds.params["min_judgments"] == 1
    assert ds.stats["consensus"]["outcomes"]["chosen"] == 3


def test_flagged_items_are_listed_in_the_stats(make_campaign, manager, annotator, annotator2):
    """An item flagged by k annotators is listed with its flags and count; below k it is not."""
    campaign = make_campaign(items=3, overlap=2, annotators=[annotator, annotator2])
    ids = sorted(campaign.items.values_list("pk", flat=True))

    def flagging(flags_by_item):
        def decide(item_id, by_model):
            answer = prefer("model-x")(item_id, by_model)
            if item_id in flags_by_item:
                answer["flags"] = flags_by_item[item_id]
            return answer
        return decide

    judge_all(campaign, annotator, flagging({ids[0]: ["unsafe"], ids[1]: ["broken"]}))
    judge_all(campaign, annotator2, flagging({ids[0]: ["private_data", "unsafe"], ids[2]: ["cant_judge"]}))
    one = build(campaign, manager)
    assert one.stats["flagged"] == {
        "min_annotators": 1, "kept": False, "decided_pairs": 2,
        "items": [{"item_id": ids[0], "flags": {"unsafe": 2, "private_data": 1}, "annotators": 2},
                  {"item_id": ids[1], "flags": {"broken": 1}, "annotators": 1}],
    }
    two = build(campaign, manager, flag_min_annotators=2, keep_flagged=True)
    assert [f["item_id"] for f in two.stats["flagged"]["items"]] == [ids[0]]
    assert two.stats["flagged"]["kept"] is True


def test_api_accepts_and_documents_the_thresholds(judged, manager, client_for, django_capture_on_commit_callbacks):
    """The API takes min_confidence, min_judgments, flag_min_annotators and keep_flagged, names a bad one,
    defaults the method to reliability weighting, and documents each parameter with its default."""
    url = reverse("api:dataset_create", kwargs={"campaign_id": judged.pk})
    bad = client_for(manager).post(url, {"params": {"min_confidence": 2}}, format="json")
    assert bad.status_code == 400
    assert bad.json()["message"] == ("params.min_confidence: must be a number from 0 to 1 (a pair whose consensus "
                                     "confidence is lower is exported undecided), not 2")
    with django_capture_on_commit_callbacks(execute=False):
        res = client_for(manager).post(url, {"params": {"min_confidence": 0.9, "min_judgments": 2,
                                                        "flag_min_annotators": 2, "keep_flagged": True}}, format="json")
    assert res.status_code == 201, res.content
    body = res.json()
    assert body["method"] == "reliability_weighted"
    assert {k: body["params"][k] for k in ("min_confidence", "min_judgments", "flag_min_annotators", "keep_flagged")} \
        == {"min_confidence": 0.9, "min_judgments": 2, "flag_min_annotators": 2, "keep_flagged": True}
    dataset_build(dataset_id=body["id"])
    listing = client_for(manager).get(reverse("api:dataset_list", kwargs={"campaign_id": judged.pk})).json()
    assert listing[0]["held_back"] == {"tie": 0, "too_few_judgments": 0, "below_confidence": 0}
    assert listing[0]["flagged"]["items"] == [] and listing[0]["flagged"]["kept"] is True

    import json as _json

    schema = _json.loads(client_for(manager).get(reverse("api:schema"),
                                                 HTTP_ACCEPT="application/vnd.oai.openapi+json").content)
    text = _json.dumps(schema["components"]["schemas"]["DatasetCreateInput"])
    for name in ("min_confidence", "min_judgments", "flag_min_annotators", "keep_flagged"):
        assert f"`{name}`" in text, name
    assert "default 0.6" in text and "+9.7 points" in text
