import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from annotation.models import Campaign, Role
from annotation.services.campaigns import campaign_create, campaign_set_status, membership_add
from annotation.services.imports import items_import
from tests.websockets import IN_MEMORY, REDIS, REDIS_HOST, redis_reachable, run_async

PASSWORD = "correct-horse-battery-staple"
ROOT = Path(__file__).resolve().parents[1]
HH_FILE = Path(os.environ.get("ARBITER_SHARED_DATA", ROOT.parent / "shared" / "data")) / "hh-harmless-1500.jsonl"


def hh_file() -> Path:
    """Return the shared HH file; locally skip without it, in CI (CI=true) fail without it."""
    if not HH_FILE.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{HH_FILE} is missing: CI runs with ../shared beside the checkout")
        pytest.skip(f"{HH_FILE} not present (set ARBITER_SHARED_DATA)")
    return HH_FILE


def jsonl(rows: Iterable[dict]) -> list[str]:
    return [json.dumps(r) for r in rows]


def pair_rows(n: int, *, prefix: str = "p", models: tuple[str, str] = ("model-x", "model-y")) -> list[dict]:
    """Return n pairwise rows; another prefix gives other texts too, so they are not duplicates."""
    tag = "" if prefix == "p" else f"{prefix}-"
    return [
        {
            "id": f"{prefix}{i}",
            "messages": [{"role": "user", "content": f"Question {tag}{i}?"}],
            "responses": [
                {"content": f"Answer one to {tag}{i}", "model": models[0]},
                {"content": f"Answer two to {tag}{i}", "model": models[1]},
            ],
        }
        for i in range(n)
    ]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def make_user(db) -> Callable:
    def make(username: str, role: str | None) -> object:
        user = get_user_model().objects.create_user(username=username, password=PASSWORD)
        if role:
            user.groups.add(Group.objects.get_or_create(name=role)[0])
        return user

    return make


@pytest.fixture
def manager(make_user):
    return make_user("manager", Role.MANAGER)


@pytest.fixture
def annotator(make_user):
    return make_user("ann", Role.ANNOTATOR)


@pytest.fixture
def annotator2(make_user):
    return make_user("ann2", Role.ANNOTATOR)


@pytest.fixture
def researcher(make_user):
    return make_user("res", Role.RESEARCHER)


@pytest.fixture
def outsider(make_user):
    """An annotator who is not a member of the campaign."""
    return make_user("outsider", Role.ANNOTATOR)


@pytest.fixture
def postgresql_only():
    """Skip the test on SQLite: it checks something only PostgreSQL does."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")


@pytest.fixture
def make_campaign(manager) -> Callable:
    def make(*, items: int = 5, overlap: int = 1, active: bool = True, annotators=(), **options) -> Campaign:
        campaign = campaign_create(created_by=manager, name=options.pop("name", "Test campaign"), overlap=overlap, **options)
        if items:
            items_import(campaign=campaign, lines=jsonl(pair_rows(items)))
        if active:
            campaign_set_status(campaign=campaign, status=Campaign.Status.ACTIVE)
        for user in annotators:
            membership_add(campaign=campaign, user=user, role=Role.ANNOTATOR)
        campaign.refresh_from_db()
        return campaign

    return make


@pytest.fixture
def campaign(make_campaign, annotator, annotator2, researcher):
    c = make_campaign(items=5, overlap=2, annotators=[annotator, annotator2])
    membership_add(campaign=c, user=researcher, role=Role.RESEARCHER)
    return c


@pytest.fixture
def client_for() -> Callable[[object], APIClient]:
    def make(user) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return make


# --- Channel layers for the websocket tests (helpers in tests/websockets.py) ---------------------


@pytest.fixture(params=["in_memory", "redis"])
def channel_layer(request, settings):
    """Each channel layer in turn; flushed before and after the test."""
    if request.param == "redis":
        if not redis_reachable():
            pytest.skip(f"Redis is not reachable at {REDIS_HOST}")
        settings.CHANNEL_LAYERS = REDIS
    else:
        settings.CHANNEL_LAYERS = IN_MEMORY
    layer = get_channel_layer()
    run_async(layer.flush)
    yield layer
    run_async(get_channel_layer().flush)


@pytest.fixture
def in_memory_layer(settings):
    settings.CHANNEL_LAYERS = IN_MEMORY
    layer = get_channel_layer()
    run_async(layer.flush)
    yield layer
    run_async(layer.flush)
