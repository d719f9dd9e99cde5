"""Dataset pages: the form shows the thresholds at their defaults and why the default method is the
default; the dataset page lists what was held back and the flagged items, linked to the items page."""

import pytest
from django.urls import reverse

from annotation.models import Dataset, Role
from annotation.services.campaigns import membership_add
from annotation.services.datasets import dataset_build
from tests.annotation.support import build, judge_all, prefer

pytestmark = pytest.mark.django_db


@pytest.fixture
def flagged(make_campaign, manager, annotator, annotator2, researcher):
    """25 items at overlap 2: the last flagged by both annotators (unsafe by both, private data by one), the
    fourth split 1–1; the rest agreed."""
    campaign = make_campaign(items=25, overlap=2, annotators=[annotator, annotator2])
    membership_add(campaign=campaign, user=researcher, role=Role.RESEARCHER)
    ids = sorted(campaign.items.values_list("pk", flat=True))

    def with_flags(flags):
        def decide(item_id, by_model):
            answer = prefer("model-x")(item_id, by_model)
            if item_id == ids[-1]:
                answer["flags"] = flags
            return answer
        return decide

    judge_all(campaign, annotator, with_flags(["unsafe", "private_data"]))
    judge_all(campaign, annotator2, lambda i, m: prefer("model-y" if i == ids[3] else "model-x")(i, m)
              | ({"flags": ["unsafe"]} if i == ids[-1] else {}))
    campaign.flagged_id, campaign.split_id = ids[-1], ids[3]
    return campaign


def test_form_shows_thresholds_at_their_defaults_and_why_the_method(flagged, manager, client):
    client.force_login(manager)
    res = client.get(reverse("campaign_datasets", kwargs={"campaign_id": flagged.pk}))
    page = res.content.decode()
    form = res.context["form"]
    assert form["method"].value() == "reliability_weighted"
    assert (form["min_judgments"].value(), form["min_confidence"].value(), form["flag_min_annotators"].value()) == (
        2, 0.6, 1)
    assert 'name="min_judgments"' in page and 'name="min_confidence"' in page and 'name="keep_flagged"' in page
    assert "Reliability-weighted voting is the default because" in page
    assert "0.797 against 0.700 at overlap 3 (+9.7 points)" in page and "at overlap 2" in page


def test_form_posts_thresholds_and_names_a_bad_one(flagged, manager, client, django_capture_on_commit_callbacks):
    client.force_login(manager)
    url = reverse("campaign_datasets", kwargs={"campaign_id": flagged.pk})
    res = client.post(url, {"method": "majority", "min_judgments": "0"})
    assert res.status_code == 200 and not Dataset.objects.exists()
    assert res.context["form"].errors["min_judgments"] == ["Ensure this value is greater than or equal to 1."]
    with django_capture_on_commit_callbacks(execute=False):
        res = client.post(url, {"method": "majority", "min_judgments": "3", "min_confidence": "0.75",
                                "flag_min_annotators": "2", "keep_flagged": "on", "include_ties": "false"})
    assert res.status_code == 302
    params = Dataset.objects.get().params
    assert (params["min_judgments"], params["min_confidence"], params["flag_min_annotators"], params["keep_flagged"],
            params["include_ties"]) == (3, 0.75, 2, True, False)


def test_blank_thresholds_take_the_campaigns_defaults(flagged, manager, client, django_capture_on_commit_callbacks):
    client.force_login(manager)
    with django_capture_on_commit_callbacks(execute=False):
        client.post(reverse("campaign_datasets", kwargs={"campaign_id": flagged.pk}),
                    {"method": "reliability_weighted", "min_judgments": "", "min_confidence": ""})
    params = Dataset.objects.get().params
    assert (params["min_judgments"], params["min_confidence"], params["keep_flagged"]) == (2, 0.6, False)


def test_dataset_page_lists_held_back_pairs_and_flagged_items(flagged, manager, researcher, client):
    ds = build(flagged, manager, method="reliability_weighted")
    client.force_login(manager)
    page = client.get(reverse("dataset_detail", kwargs={"dataset_id": ds.pk})).content.decode()
    assert 'data-testid="held-back"' in page
    held = ds.stats["held_back"]
    assert held["tie"] + held["too_few_judgments"] + held["below_confidence"] == 1
    assert f'<tr data-reason="too_few_judgments"><td>Fewer judgments than min_judgments agree with the consensus ' \
           f'winner</td><td class="text-right">{held["too_few_judgments"]}</td></tr>' in page
    assert "1 item flagged unsafe, private data or broken by at least 1 annotator:" in page
    assert "left out of every training export, with 1 decided pair." in page
    # The 25th item is on the items list's second page.
    link = reverse("campaign_items", args=[flagged.pk]) + f"?page=2#item-{flagged.flagged_id}"
    assert f'<a href="{link}">Item #{flagged.flagged_id}</a>' in page
    assert "Unsafe content (2), Private data (1)" in page
    items_page = client.get(link.split("#")[0]).content.decode()
    assert f'id="item-{flagged.flagged_id}"' in items_page
    # Researchers cannot open the items page: they see the item without a link.
    client.force_login(researcher)
    page = client.get(reverse("dataset_detail", kwargs={"dataset_id": ds.pk})).content.decode()
    assert f"Item #{flagged.flagged_id}" in page and link not in page


def test_old_dataset_without_counts_shows_no_held_back_section(flagged, manager, client):
    ds = build(flagged, manager)
    Dataset.objects.filter(pk=ds.pk).update(stats={k: v for k, v in ds.stats.items()
                                                   if k not in ("held_back", "flagged")})
    client.force_login(manager)
    page = client.get(reverse("dataset_detail", kwargs={"dataset_id": ds.pk})).content.decode()
    assert 'data-testid="held-back"' not in page
    assert dataset_build(dataset_id=ds.pk).status == "ready"
