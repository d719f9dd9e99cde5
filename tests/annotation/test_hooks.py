"""annotation.hooks: receivers run after the announcing transaction commits, never after a rollback."""

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from annotation import hooks

pytestmark = pytest.mark.django_db(transaction=True)  # real commits and rollbacks


@pytest.fixture
def calls(monkeypatch):
    """Receivers that record their calls, in place of the registered ones."""
    seen = []
    monkeypatch.setattr(hooks, "_judgment_recorded", [])
    monkeypatch.setattr(hooks, "_campaign_closed", [])

    def judged(*, campaign_id: int) -> None:
        seen.append(("judged", campaign_id))

    def closed(*, campaign_id: int) -> None:
        seen.append(("closed", campaign_id))

    hooks.on_judgment_recorded(judged)
    hooks.on_judgment_recorded(judged)  # registering again changes nothing
    hooks.on_campaign_closed(closed)
    return seen


def test_receivers_run_once_each_after_the_commit(calls):
    with transaction.atomic():
        hooks.judgment_recorded(campaign_id=1)
        hooks.campaign_closed(campaign_id=2)
        assert calls == []  # not before the commit
    assert calls == [("judged", 1), ("closed", 2)]


def test_a_rolled_back_change_announces_nothing(calls):
    with pytest.raises(RuntimeError), transaction.atomic():
        hooks.judgment_recorded(campaign_id=1)
        hooks.campaign_closed(campaign_id=1)
        raise RuntimeError("rolled back")
    with transaction.atomic():
        with pytest.raises(RuntimeError), transaction.atomic():  # a savepoint rolled back
            hooks.judgment_recorded(campaign_id=2)
            raise RuntimeError("rolled back")
        hooks.judgment_recorded(campaign_id=3)
    assert calls == [("judged", 3)]


def test_a_failing_receiver_raises_after_the_change_is_committed(calls):
    """As any on_commit callback: the error reaches the committer; the receivers after it do not run."""

    def broken(*, campaign_id: int) -> None:
        raise RuntimeError("receiver failed")

    hooks._campaign_closed.insert(0, broken)
    with pytest.raises(RuntimeError, match="receiver failed"), transaction.atomic():
        get_user_model().objects.create_user(username="kept")
        hooks.campaign_closed(campaign_id=1)
    assert get_user_model().objects.filter(username="kept").exists()
    assert calls == []
