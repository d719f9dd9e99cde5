"""annotation.sql: the serving function's one source, filled in from the models' values."""

import re

import pytest
from django.db import connection

from annotation.sql import function_sql, has_room

TABLES = ("assignment", "campaign", "counter", "item", "item_response", "judgment", "membership", "prompt",
          "response", "token", "user")


def test_the_function_text_has_every_placeholder_filled_in():
    sql = function_sql({name: f'"{name}_table"' for name in TABLES})
    assert re.search(r"\{\w+(:\w+)?\}", sql) is None
    assert has_room("i") in sql and has_room("it") in sql
    assert "a.status = 'leased'" in sql and "SET status = 'expired'" in sql
    assert "o_role NOT IN ('annotator', 'manager')" in sql and "o_status <> 'active'" in sql
    assert "LIMIT 200" in sql


def test_a_missing_table_is_named():
    with pytest.raises(KeyError, match="unknown placeholder {token}"):
        function_sql({name: f'"{name}_table"' for name in TABLES if name != "token"})


@pytest.mark.django_db
def test_the_migrations_installed_the_file(postgresql_only):
    """Migration 0005 and later ones install next.sql as it is now."""
    q = connection.ops.quote_name
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from annotation import models

    tables = {
        "assignment": models.Assignment, "campaign": models.Campaign, "counter": models.CampaignCounter,
        "item": models.Item, "item_response": models.ItemResponse, "judgment": models.Judgment,
        "membership": models.Membership, "prompt": models.Prompt, "response": models.Response,
        "token": Token, "user": get_user_model(),
    }
    body = function_sql({k: q(m._meta.db_table) for k, m in tables.items()}).split("$fn$")[1]
    with connection.cursor() as cursor:
        cursor.execute("SELECT prosrc FROM pg_proc WHERE proname = 'arbiter_next'")
        assert [row[0] for row in cursor.fetchall()] == [body]
