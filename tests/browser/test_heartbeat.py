"""The open judging page keeps its lease with a heartbeat, and says at once when it was lost."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Assignment
from annotation.services.serving import assignment_lease_next, leases_expire
from tests.browser.conftest import wait_for_item

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_heartbeat_extends_the_lease_and_reports_a_lost_one(page, login, make_campaign, annotator, annotator2,
                                                             page_problems):
    campaign = make_campaign(items=1, overlap=1, annotators=[annotator, annotator2], lease_seconds=30)
    page.clock.install()  # the page's timers run when the test says so
    login(annotator)
    page.goto(f"/campaigns/{campaign.pk}/judge/")
    aid = int(wait_for_item(page))
    first_expiry = Assignment.objects.get(pk=aid).expires_at

    # A 30 s lease beats every 10 s.
    page.clock.run_for(11_000)
    page.wait_for_function("() => document.querySelector('[data-testid=status]') !== null")
    deadline = timezone.now() + timedelta(seconds=5)
    while Assignment.objects.get(pk=aid).expires_at <= first_expiry:
        assert timezone.now() < deadline, "the heartbeat did not extend the lease"
        page.wait_for_timeout(100)

    # The lease lapses and the item goes to someone else: the next beat says so.
    now = timezone.now()
    Assignment.objects.filter(pk=aid).update(leased_at=now - timedelta(minutes=5), expires_at=now - timedelta(seconds=1))
    leases_expire(campaign_id=campaign.pk)
    assert assignment_lease_next(campaign_id=campaign.pk, annotator=annotator2) is not None
    page.clock.run_for(11_000)
    error = page.get_by_test_id("error")
    error.wait_for(state="visible")
    assert "went to someone else" in error.inner_text()
    assert page.get_by_role("button", name="Load next item").is_visible()
    # the only problem the page saw is the refused heartbeat itself
    assert page_problems.errors == [
        f"HTTP 409: POST {page.url.split('/campaigns/')[0]}/api/v1/assignments/{aid}/heartbeat/"
    ]
