"""`seed_demo`: the demo `make run` starts with."""

import re

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from annotation.demo import CAREFUL, HASTY, demo_rows
from annotation.models import Campaign, Item, Judgment

pytestmark = pytest.mark.django_db


def test_demo_rows_are_generated_deterministically_with_two_models():
    rows = list(demo_rows(240))
    assert rows == list(demo_rows(240))
    assert len({r["id"] for r in rows}) == 240
    assert all([x["model"] for x in r["responses"]] == [CAREFUL, HASTY] for r in rows)
    assert len({r["metadata"]["task"] for r in rows}) == 6


def test_seed_demo_creates_users_with_printed_passwords_and_a_campaign_of_each_kind(capsys):
    call_command("seed_demo")
    out = capsys.readouterr().out
    passwords = dict(re.findall(r"(\w+)\s+password: (\S+)", out))
    assert set(passwords) == {"manager", "annotator1", "annotator2", "researcher"}
    for username, password in passwords.items():
        assert authenticate(username=username, password=password) is not None
    kinds = dict(Campaign.objects.values_list("name", "kind"))
    assert sorted(kinds.values()) == ["pairwise", "ranking", "rating", "rating"]
    pairwise = Campaign.objects.get(kind="pairwise")
    assert pairwise.status == "active" and Item.objects.filter(campaign=pairwise).count() >= 200
    assert pairwise.memberships.filter(role="annotator").count() == 2
    # running it again keeps the data and resets nothing but the passwords
    call_command("seed_demo", "--keep-passwords")
    assert Campaign.objects.count() == 4 and not Judgment.objects.exists()
    assert "(unchanged)" in capsys.readouterr().out
