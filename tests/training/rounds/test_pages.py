"""The "Generate next round" page: the form, the request it queues, and the round (or the error) it leads to."""

import pytest
from django.urls import reverse

from annotation.models import Campaign


@pytest.mark.training
def test_the_page_follows_the_request_to_the_new_round_or_its_error(
    make_campaign, manager, tiny_root, roots, model_folder, settings, eager, client, django_capture_on_commit_callbacks
):
    """After the form is sent the page opens the new round; a failed generation is shown, not swallowed."""
    settings.ARBITER_MODEL_ROOTS = [tiny_root, roots / "models"]
    source = make_campaign(items=2)
    client.force_login(manager)
    url = reverse("campaign_round_new", kwargs={"campaign_id": source.pk})
    page = client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "tiny-causal-lm" in html and 'value="' + str((tiny_root / "tiny-reward-base").resolve()) in html
    form = {"checkpoints": [str((tiny_root / "tiny-causal-lm").resolve())], "k": 2, "max_new_tokens": 4,
            "temperature": 1.0, "top_p": 1.0, "selection": "random", "pairs_per_prompt": 1, "seed": 0}
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(url, form).headers["Location"] == url
    new = Campaign.objects.get(parent=source)
    followed = client.get(url)
    assert followed.status_code == 302 and followed.headers["Location"] == reverse(
        "campaign_detail", kwargs={"campaign_id": new.pk}
    )

    broken = model_folder(roots / "models" / "weightless")  # a config.json but no weights
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, {**form, "checkpoints": [str(broken.resolve())]})
    shown = client.get(url)
    assert shown.status_code == 200
    text = shown.content.decode()
    assert "Generating the next round failed:" in text and "Failed" in text
    assert Campaign.objects.filter(parent=source).count() == 1
    bad = client.post(url, {**form, "k": 1})
    assert "a pairwise round needs at least 2 replies per prompt" in bad.content.decode()
