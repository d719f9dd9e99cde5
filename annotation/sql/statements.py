"""The serving statements (`next`'s steps, submit's writes, the heartbeat's retake, the token
lookup), built once per database vendor from the models' tables and the choice values.

`next.sql` beside this module is the PostgreSQL function; these are the statements that
annotation.services.serving runs itself. Both use `has_room` and `sql_values`, so each rule is
written once.
"""

from __future__ import annotations

import functools

from django.db import connection

from annotation.models import (
    Assignment,
    Campaign,
    CampaignCounter,
    Item,
    ItemResponse,
    Judgment,
    Membership,
    Prompt,
)
from annotation.models import Response as ResponseModel
from annotation.sql import has_room, sql_values

JUDGMENT_FIELDS = (
    "campaign", "item", "assignment", "annotator", "outcome", "preferred_response", "strength", "answer",
    "rationale", "edited_response", "display_order", "time_taken_ms", "campaign_version", "gold_correct",
    "created_at",
)


@functools.cache
def serving_statements(vendor: str) -> dict[str, str]:
    """Return the serving statements for the database vendor, by name (built once per vendor)."""
    q = connection.ops.quote_name
    t = {
        m.__name__: q(m._meta.db_table)
        for m in (Assignment, Campaign, CampaignCounter, Item, ItemResponse, Judgment, Membership, Prompt,
                  ResponseModel)
    }
    v = sql_values()
    lock = " FOR UPDATE OF m" if vendor == "postgresql" else ""
    open_item = (
        f"SELECT i.id FROM {t['Item']} i WHERE i.campaign_id = %s AND i.is_gold IN (%s)"
        f" AND {has_room('i')}"
        f" AND NOT EXISTS (SELECT 1 FROM {t['Assignment']} a WHERE a.item_id = i.id AND a.annotator_id = %s)"
        " ORDER BY i.judgment_count DESC, i.priority DESC, i.random_key ASC LIMIT 1"
    )
    if vendor == "postgresql":
        # SKIP LOCKED: concurrent annotators take different rows instead of queueing on one.
        lease_item = (
            f"WITH cand AS ({open_item} FOR UPDATE OF i SKIP LOCKED) "
            f"UPDATE {t['Item']} SET lease_count = {t['Item']}.lease_count + 1 FROM cand "
            f"WHERE {t['Item']}.id = cand.id AND {has_room(t['Item'])} "
            f"RETURNING {t['Item']}.id, {t['Item']}.prompt_id, "
            # What the page shows, in the same round trip.
            f"(SELECT p.messages FROM {t['Prompt']} p WHERE p.id = {t['Item']}.prompt_id), "
            f"(SELECT json_agg(json_build_array(ir.response_id, r.content) ORDER BY ir.position) "
            f"FROM {t['ItemResponse']} ir JOIN {t['Response']} r ON r.id = ir.response_id "
            f"WHERE ir.item_id = {t['Item']}.id)"
        )
    else:  # SQLite: the transaction holds the write lock from BEGIN (IMMEDIATE)
        lease_item = (
            f"UPDATE {t['Item']} SET lease_count = lease_count + 1 WHERE id = ({open_item}) "
            f"AND {has_room()} RETURNING id, prompt_id"
        )
    own_columns = (
        "SELECT a.status, a.item_id, a.display_order, a.campaign_id, c.status, c.kind, c.allow_ties, "
        "c.allow_both_bad, c.use_strength, c.require_rationale, c.allow_editing, c.criteria, c.version, "
        "i.is_gold, i.gold, c.announce_judgments"
    )
    own_from = (
        f"FROM {t['Assignment']} a JOIN {t['Campaign']} c ON c.id = a.campaign_id JOIN {t['Item']} i ON i.id = a.item_id"
    )
    lock_a = " FOR UPDATE OF a" if vendor == "postgresql" else ""
    statements = {}
    if vendor == "postgresql":
        # The API's submit: the token's user (as DRF's TokenAuthentication reads it) and their
        # assignment, locked, in one statement.
        from django.contrib.auth import get_user_model
        from rest_framework.authtoken.models import Token

        user = get_user_model()._meta
        statements["own_assignment_for_token"] = (
            f"WITH who AS (SELECT u.{q(user.pk.column)} AS id, u.{q('is_active')} AS is_active, "
            f"u.{q('is_superuser')} AS is_superuser FROM {q(Token._meta.db_table)} t "
            f"JOIN {q(user.db_table)} u ON u.{q(user.pk.column)} = t.{q('user_id')} WHERE t.{q('key')} = %s) "
            f"SELECT who.id, who.is_active, who.is_superuser, own.* FROM who LEFT JOIN LATERAL "
            f"({own_columns} {own_from} WHERE a.id = %s AND a.annotator_id = who.id{lock_a}) own ON true"
        )
        # `next` in one call of `arbiter_next` (annotation/sql/next.sql, installed by the migrations).
        statements["next_call"] = (
            "SELECT * FROM arbiter_next(%s::bigint, %s::text, %s::integer, %s::timestamptz, %s::float8, %s::float8[])"
        )
        j = Judgment._meta
        columns = ", ".join(q(f.column) for f in (j.get_field(n) for n in JUDGMENT_FIELDS))
        marks = ", ".join(f"%({n})s" for n in JUDGMENT_FIELDS)
        statements["record"] = (
            f"WITH it AS (UPDATE {t['Item']} SET judgment_count = judgment_count + 1, "
            "lease_count = lease_count - %(held_n)s "
            f"WHERE id = %(item)s AND (%(held)s OR {has_room()}) "
            "RETURNING judgment_count >= target AS complete), "
            f"mem AS (UPDATE {t['Membership']} SET judged = judged + 1, gold_judged = gold_judged + %(scored)s, "
            "gold_correct = gold_correct + %(correct)s WHERE campaign_id = %(campaign)s "
            f"AND user_id = %(annotator)s AND is_active AND role IN ({v['role_annotator']}, {v['role_manager']}) "
            "RETURNING 1), "
            f"cnt AS (UPDATE {t['CampaignCounter']} SET judgments = judgments + 1, "
            "items_complete = items_complete + COALESCE((SELECT complete::int FROM it), 0) "
            "WHERE campaign_id = %(campaign)s AND shard = %(shard)s AND %(counted)s RETURNING 1), "
            f"asg AS (UPDATE {t['Assignment']} SET status = {v['assignment_submitted']}, "
            "completed_at = %(created_at)s WHERE id = %(assignment)s RETURNING 1), "
            f"jud AS (INSERT INTO {t['Judgment']} ({columns}) VALUES ({marks}) RETURNING id) "
            "SELECT (SELECT complete FROM it), (SELECT count(*) FROM mem), (SELECT id FROM jud)"
        )
    return statements | {
        # The membership row is locked first (one `next` per annotator at a time); the open lease
        # is read by the next statement, which sees what a concurrent `next` committed meanwhile.
        "member": (
            "SELECT m.role, m.is_active, m.cap, m.judged, c.status, c.gold_rate, c.lease_seconds, "
            f"c.wanted_judgments, (SELECT SUM(k.judgments) FROM {t['CampaignCounter']} k WHERE k.campaign_id = c.id) "
            f"FROM {t['Membership']} m JOIN {t['Campaign']} c ON c.id = m.campaign_id "
            f"WHERE m.campaign_id = %s AND m.user_id = %s{lock}"
        ),
        "open_lease": (
            f"SELECT id, item_id, display_order, leased_at, expires_at FROM {t['Assignment']} "
            f"WHERE campaign_id = %s AND annotator_id = %s AND status = {v['assignment_leased']} AND expires_at > %s "
            "ORDER BY leased_at LIMIT 1"
        ),
        "lease_item": lease_item,
        "shown": (
            f"SELECT p.messages, ir.response_id, r.content FROM {t['ItemResponse']} ir "
            f"JOIN {t['Response']} r ON r.id = ir.response_id JOIN {t['Prompt']} p ON p.id = %s "
            "WHERE ir.item_id = %s ORDER BY ir.position"
        ),
        "shown_of_item": (
            f"SELECT p.messages, ir.response_id, r.content FROM {t['Item']} i "
            f"JOIN {t['Prompt']} p ON p.id = i.prompt_id JOIN {t['ItemResponse']} ir ON ir.item_id = i.id "
            f"JOIN {t['Response']} r ON r.id = ir.response_id WHERE i.id = %s"
        ),
        # The assignment row is locked; a second submit of it waits here, then sees it submitted.
        "own_assignment": f"{own_columns} {own_from} WHERE a.id = %s AND a.annotator_id = %s{lock_a}",
        "count_in_lease": (
            f"UPDATE {t['Item']} SET judgment_count = judgment_count + 1, lease_count = lease_count - 1 "
            "WHERE id = %s RETURNING judgment_count >= target"
        ),
        "count_free": (
            f"UPDATE {t['Item']} SET judgment_count = judgment_count + 1 "
            f"WHERE id = %s AND {has_room()} RETURNING judgment_count >= target"
        ),
        "counter": (
            f"UPDATE {t['CampaignCounter']} SET judgments = judgments + 1, items_complete = items_complete + %s "
            "WHERE campaign_id = %s AND shard = %s"
        ),
        # Counting the judgment against the membership is also the check that the member may
        # still judge (active, annotator or manager).
        "member_count": (
            f"UPDATE {t['Membership']} SET judged = judged + 1, gold_judged = gold_judged + %s, "
            "gold_correct = gold_correct + %s WHERE campaign_id = %s AND user_id = %s AND is_active "
            f"AND role IN ({v['role_annotator']}, {v['role_manager']})"
        ),
        "submitted": (
            f"UPDATE {t['Assignment']} SET status = {v['assignment_submitted']}, completed_at = %s WHERE id = %s"
        ),
        # The heartbeat takes a lapsed lease's place again while the item has room.
        "retake": f"UPDATE {t['Item']} SET lease_count = lease_count + 1 WHERE id = %s AND {has_room()}",
    }


@functools.cache
def token_sql(vendor: str) -> str:
    """Return the statement that reads an API token's user as DRF's TokenAuthentication does."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    q = connection.ops.quote_name
    user = get_user_model()._meta
    return (
        f"SELECT u.{q(user.pk.column)}, u.{q('is_active')}, u.{q('is_superuser')} FROM {q(Token._meta.db_table)} t "
        f"JOIN {q(user.db_table)} u ON u.{q(user.pk.column)} = t.{q('user_id')} WHERE t.{q('key')} = %s"
    )
