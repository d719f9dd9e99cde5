"""Serving's SQL, written once: the `arbiter_next` function (next.sql) and the shared conditions.

`next.sql` names tables and the values of the models' choices by placeholder: `{item}` is the
item table, `{assignment_leased}` the quoted value of `Assignment.Status.LEASED`, and
`{has_room:i}` the "item has room" condition on the item aliased `i`. `function_sql` fills them
in; the migrations that install the function (0005, and each one that changes it) call it, so
the text of the function lives in the file alone. The statements serving runs itself
(`statements.py`) use `has_room` and the same values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

EXPIRE_BATCH = 200  # lapsed leases returned to the pool per pass (leases_expire and arbiter_next)

DROP_NEXT = (
    "DROP FUNCTION IF EXISTS arbiter_next(bigint, text, integer, timestamptz, double precision, double precision[])"
)

_PLACEHOLDER = re.compile(r"\{(\w+)(?::(\w+))?\}")


def has_room(item: str = "") -> str:
    """The condition "the item can take one more judgment or lease", on the item table or its alias `item`.

    Judgments plus open leases never exceed the target (a CHECK constraint holds it), so one
    more fits while the judgments are below the target less the open leases.
    """
    p = f"{item}." if item else ""
    return f"{p}judgment_count < {p}target - {p}lease_count"


def sql_values() -> dict[str, str]:
    """The choice values the serving SQL compares with, as quoted SQL literals."""
    from annotation.models import Assignment, Campaign, Role

    values = {
        "role_annotator": Role.ANNOTATOR,
        "role_manager": Role.MANAGER,
        "assignment_leased": Assignment.Status.LEASED,
        "assignment_expired": Assignment.Status.EXPIRED,
        "assignment_submitted": Assignment.Status.SUBMITTED,
        "campaign_active": Campaign.Status.ACTIVE,
    }
    return {name: "'" + str(value).replace("'", "''") + "'" for name, value in values.items()}


def function_sql(tables: Mapping[str, str]) -> str:
    """Return next.sql's CREATE OR REPLACE FUNCTION with the (quoted) table names given filled in.

    `tables` maps each table placeholder (assignment, campaign, counter, item, item_response,
    judgment, membership, prompt, response, token, user) to its quoted name.
    """
    known = {**tables, **sql_values(), "expire_batch": str(EXPIRE_BATCH)}

    def fill(match: re.Match) -> str:
        name, alias = match.groups()
        if name == "has_room" and alias:
            return has_room(alias)
        if alias is None and name in known:
            return known[name]
        raise KeyError(f"next.sql: unknown placeholder {match.group(0)}")

    return _PLACEHOLDER.sub(fill, (Path(__file__).parent / "next.sql").read_text())


def install_next(apps, schema_editor) -> None:
    """Install (or replace) `arbiter_next` on PostgreSQL, from the migration's models; elsewhere nothing."""
    if schema_editor.connection.vendor != "postgresql":
        return
    from django.conf import settings

    names = {
        "assignment": "Assignment", "campaign": "Campaign", "counter": "CampaignCounter", "item": "Item",
        "item_response": "ItemResponse", "judgment": "Judgment", "membership": "Membership", "prompt": "Prompt",
        "response": "Response",
    }
    tables = {key: apps.get_model("annotation", model)._meta.db_table for key, model in names.items()}
    tables["user"] = apps.get_model(settings.AUTH_USER_MODEL)._meta.db_table
    tables["token"] = apps.get_model("authtoken", "Token")._meta.db_table
    q = schema_editor.connection.ops.quote_name
    schema_editor.execute(function_sql({key: q(name) for key, name in tables.items()}), params=None)


def remove_next(apps, schema_editor) -> None:
    """Drop `arbiter_next` (PostgreSQL)."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_NEXT, params=None)
