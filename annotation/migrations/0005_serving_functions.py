"""`next` as a PostgreSQL function: one round trip instead of seven.

`next` was a token lookup and a transaction of five statements (BEGIN with the first, COMMIT
after the last); each round trip costs the server process more Python than the statement costs
the database. `arbiter_next` runs the same statements, in the same order and with the same locks
(`FOR UPDATE` of the membership, `SKIP LOCKED` on the item), inside the database; called in
autocommit it is one transaction. It never raises for a business rule: it answers a kind
("leased", "reopened", "refused", ...) and annotation.services.serving does the rest, falling
back to its step-by-step transaction for the rare cases (a superuser without a membership;
nothing open, where lapsed leases may hold the last places). SQLite keeps the step-by-step path.
"""

from django.conf import settings
from django.db import migrations

NEXT = """
CREATE OR REPLACE FUNCTION arbiter_next(
    p_campaign bigint, p_token text, p_user integer, p_now timestamptz, p_draw double precision,
    p_keys double precision[],
    OUT o_kind text, OUT o_user integer, OUT o_superuser boolean, OUT o_role text, OUT o_active boolean,
    OUT o_status text, OUT o_cap integer, OUT o_judged integer, OUT o_wanted integer, OUT o_done bigint,
    OUT o_assignment bigint, OUT o_item bigint, OUT o_order jsonb, OUT o_leased timestamptz,
    OUT o_expires timestamptz, OUT o_messages jsonb, OUT o_responses json)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_user_active boolean;
    v_gold_rate double precision;
    v_lease_seconds integer;
    v_gold boolean;
BEGIN
    -- Who asks: a token (the API's hot path) or a user id (a session).
    IF p_token IS NOT NULL THEN
        SELECT u.id, u.is_active, u.is_superuser INTO o_user, v_user_active, o_superuser
          FROM {token} t JOIN {user} u ON u.id = t.user_id WHERE t.key = p_token;
        IF NOT FOUND THEN
            o_kind := 'bad_token';
            RETURN;
        END IF;
        IF NOT v_user_active THEN
            o_kind := 'inactive';
            RETURN;
        END IF;
    ELSE
        o_user := p_user;
    END IF;
    -- The membership row is locked first: one `next` per annotator at a time.
    SELECT m.role, m.is_active, m.cap, m.judged, c.status, c.gold_rate, c.lease_seconds, c.wanted_judgments,
           (SELECT SUM(k.judgments) FROM {counter} k WHERE k.campaign_id = c.id)
      INTO o_role, o_active, o_cap, o_judged, o_status, v_gold_rate, v_lease_seconds, o_wanted, o_done
      FROM {membership} m JOIN {campaign} c ON c.id = m.campaign_id
     WHERE m.campaign_id = p_campaign AND m.user_id = o_user
       FOR UPDATE OF m;
    IF NOT FOUND THEN
        o_kind := 'no_member';
        RETURN;
    END IF;
    IF o_role NOT IN ('annotator', 'manager') OR NOT o_active OR o_status <> 'active' THEN
        o_kind := 'refused';
        RETURN;
    END IF;
    -- Re-entering the campaign gives the open lease back.
    SELECT a.id, a.item_id, a.display_order, a.leased_at, a.expires_at
      INTO o_assignment, o_item, o_order, o_leased, o_expires
      FROM {assignment} a
     WHERE a.campaign_id = p_campaign AND a.annotator_id = o_user AND a.status = 'leased' AND a.expires_at > p_now
     ORDER BY a.leased_at LIMIT 1;
    IF FOUND THEN
        o_kind := 'reopened';
    ELSE
        IF o_cap IS NOT NULL AND o_judged >= o_cap THEN
            o_kind := 'capped';
            RETURN;
        END IF;
        -- A gold check at the campaign's rate (p_draw is uniform on [0, 1)), else regular work;
        -- regular work when no gold check is left for this annotator.
        FOREACH v_gold IN ARRAY (CASE WHEN v_gold_rate > 0 AND p_draw < v_gold_rate
                                      THEN ARRAY[true, false] ELSE ARRAY[false] END) LOOP
            WITH cand AS (
                SELECT i.id FROM {item} i
                 WHERE i.campaign_id = p_campaign AND i.is_gold = v_gold
                   AND i.judgment_count < i.target - i.lease_count
                   AND NOT EXISTS (SELECT 1 FROM {assignment} a WHERE a.item_id = i.id AND a.annotator_id = o_user)
                 ORDER BY i.judgment_count DESC, i.priority DESC, i.random_key ASC LIMIT 1
                   FOR UPDATE OF i SKIP LOCKED)
            UPDATE {item} it SET lease_count = it.lease_count + 1 FROM cand
             WHERE it.id = cand.id AND it.judgment_count < it.target - it.lease_count
            RETURNING it.id INTO o_item;
            EXIT WHEN o_item IS NOT NULL;
        END LOOP;
        IF o_item IS NULL THEN
            o_kind := 'empty';
            RETURN;
        END IF;
        -- The display order: the item's responses sorted by the caller's random keys.
        SELECT jsonb_agg(ir.response_id ORDER BY p_keys[ir.position + 1], ir.position) INTO o_order
          FROM {item_response} ir WHERE ir.item_id = o_item;
        o_leased := p_now;
        o_expires := p_now + make_interval(secs => v_lease_seconds);
        INSERT INTO {assignment} (campaign_id, item_id, annotator_id, status, display_order, leased_at,
                                  expires_at, skip_reason)
        VALUES (p_campaign, o_item, o_user, 'leased', o_order, o_leased, o_expires, '')
        RETURNING id INTO o_assignment;
        o_kind := 'leased';
    END IF;
    -- What the page shows.
    SELECT p.messages INTO o_messages FROM {item} i JOIN {prompt} p ON p.id = i.prompt_id WHERE i.id = o_item;
    SELECT json_agg(json_build_array(ir.response_id, r.content)) INTO o_responses
      FROM {item_response} ir JOIN {response} r ON r.id = ir.response_id WHERE ir.item_id = o_item;
END
$fn$;
"""

DROP = """
DROP FUNCTION IF EXISTS arbiter_next(bigint, text, integer, timestamptz, double precision, double precision[]);
"""


def _tables(apps) -> dict[str, str]:
    names = {
        "assignment": "Assignment", "campaign": "Campaign", "counter": "CampaignCounter", "item": "Item",
        "item_response": "ItemResponse", "judgment": "Judgment", "membership": "Membership", "prompt": "Prompt",
        "response": "Response",
    }
    tables = {key: apps.get_model("annotation", model)._meta.db_table for key, model in names.items()}
    tables["user"] = apps.get_model(settings.AUTH_USER_MODEL)._meta.db_table
    tables["token"] = apps.get_model("authtoken", "Token")._meta.db_table
    return tables


def install(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    q = schema_editor.connection.ops.quote_name
    tables = {key: q(name) for key, name in _tables(apps).items()}
    schema_editor.execute(_fill(NEXT, tables), params=None)


def _fill(sql: str, tables: dict[str, str]) -> str:
    for key, name in tables.items():
        sql = sql.replace("{" + key + "}", name)
    return sql


def remove(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "0004_serving_indexes"),
        ("authtoken", "0004_alter_tokenproxy_options"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [migrations.RunPython(install, remove)]
