-- `next` in one round trip: arbiter_next answers every case of annotation.services.serving's
-- `lease_next` on PostgreSQL, with the same statements, order and locks as its step-by-step
-- path (which serves SQLite): `FOR UPDATE` of the membership, `SKIP LOCKED` on the item and on
-- lapsed leases. Called in autocommit it is one transaction. It never raises for a business
-- rule: it answers a kind and the service turns it into the answer or the error.
--
--   bad_token, inactive  the token is unknown, or its user is inactive (token calls only)
--   no_member            no membership, and not a superuser (or no such campaign)
--   refused              the member may not judge (role, paused), or the campaign is not active
--   capped               the member reached their cap; o_done, o_wanted, o_judged are set
--   empty                nothing is left for them, even after lapsed leases were returned
--   reopened, leased     their open lease, or a new one, with what the page shows
--
-- Placeholders ({item}, {assignment_leased}, {has_room:i}, ...) are filled in by
-- annotation.sql.function_sql.
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
    v_tries boolean[];
    v_try integer := 0;
    v_swept boolean := false;
    v_leases bigint[];
    v_lease_items bigint[];
    v_free bigint[];
    v_expired integer := 0;
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
        -- A superuser judges without a membership (nothing to lock; no cap; their count is their
        -- current judgments); anyone else learns nothing about the campaign.
        IF o_superuser IS NULL THEN
            SELECT u.is_superuser INTO o_superuser FROM {user} u WHERE u.id = o_user;
        END IF;
        IF o_superuser THEN
            SELECT c.status, c.gold_rate, c.lease_seconds, c.wanted_judgments,
                   (SELECT SUM(k.judgments) FROM {counter} k WHERE k.campaign_id = c.id),
                   (SELECT count(*) FROM {judgment} j
                     WHERE j.campaign_id = c.id AND j.annotator_id = o_user AND j.supersedes_id IS NULL)
              INTO o_status, v_gold_rate, v_lease_seconds, o_wanted, o_done, o_judged
              FROM {campaign} c WHERE c.id = p_campaign;
        END IF;
        IF o_status IS NULL THEN
            o_kind := 'no_member';
            RETURN;
        END IF;
    ELSIF o_role NOT IN ({role_annotator}, {role_manager}) OR NOT o_active THEN
        o_kind := 'refused';
        RETURN;
    END IF;
    IF o_status <> {campaign_active} THEN
        o_kind := 'refused';
        RETURN;
    END IF;
    -- Re-entering the campaign gives the open lease back.
    SELECT a.id, a.item_id, a.display_order, a.leased_at, a.expires_at
      INTO o_assignment, o_item, o_order, o_leased, o_expires
      FROM {assignment} a
     WHERE a.campaign_id = p_campaign AND a.annotator_id = o_user AND a.status = {assignment_leased}
       AND a.expires_at > p_now
     ORDER BY a.leased_at LIMIT 1;
    IF FOUND THEN
        o_kind := 'reopened';
    ELSE
        IF o_cap IS NOT NULL AND o_judged >= o_cap THEN
            o_kind := 'capped';
            RETURN;
        END IF;
        -- Where to look, in order: a gold check at the campaign's rate (p_draw is uniform on
        -- [0, 1)) and then regular work, or regular work alone; and regular work once more after
        -- lapsed leases were returned to the pool.
        v_tries := CASE WHEN v_gold_rate > 0 AND p_draw < v_gold_rate THEN ARRAY[true, false] ELSE ARRAY[false] END;
        WHILE o_item IS NULL AND v_try < cardinality(v_tries) LOOP
            v_try := v_try + 1;
            v_gold := v_tries[v_try];
            WITH cand AS (
                SELECT i.id FROM {item} i
                 WHERE i.campaign_id = p_campaign AND i.is_gold = v_gold AND {has_room:i}
                   AND NOT EXISTS (SELECT 1 FROM {assignment} a WHERE a.item_id = i.id AND a.annotator_id = o_user)
                 ORDER BY i.judgment_count DESC, i.priority DESC, i.random_key ASC LIMIT 1
                   FOR UPDATE OF i SKIP LOCKED)
            UPDATE {item} it SET lease_count = it.lease_count + 1 FROM cand
             WHERE it.id = cand.id AND {has_room:it}
            RETURNING it.id INTO o_item;
            IF o_item IS NULL AND v_try = cardinality(v_tries) AND NOT v_swept THEN
                -- Lapsed leases may hold the last places: expire them as leases_expire does,
                -- never waiting on a row another transaction holds (leases, then their items
                -- in id order, both SKIP LOCKED; a lease whose item is busy stays for later).
                v_swept := true;
                SELECT array_agg(l.id), array_agg(l.item_id) INTO v_leases, v_lease_items FROM (
                    SELECT a.id, a.item_id FROM {assignment} a
                     WHERE a.campaign_id = p_campaign AND a.status = {assignment_leased} AND a.expires_at <= p_now
                     ORDER BY a.expires_at LIMIT {expire_batch}
                       FOR UPDATE OF a SKIP LOCKED) l;
                IF v_leases IS NOT NULL THEN
                    SELECT array_agg(f.id) INTO v_free FROM (
                        SELECT i.id FROM {item} i WHERE i.id = ANY (v_lease_items) ORDER BY i.id
                           FOR UPDATE OF i SKIP LOCKED) f;
                    WITH gone AS (
                        UPDATE {assignment} a SET status = {assignment_expired}
                         WHERE a.id = ANY (v_leases) AND a.item_id = ANY (v_free) AND a.status = {assignment_leased}
                        RETURNING a.item_id)
                    UPDATE {item} i SET lease_count = i.lease_count - g.n
                      FROM (SELECT gone.item_id, count(*) AS n FROM gone GROUP BY gone.item_id) g
                     WHERE i.id = g.item_id;
                    GET DIAGNOSTICS v_expired = ROW_COUNT;
                    IF v_expired > 0 THEN
                        v_tries := v_tries || false;
                    END IF;
                END IF;
            END IF;
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
        VALUES (p_campaign, o_item, o_user, {assignment_leased}, o_order, o_leased, o_expires, '')
        RETURNING id INTO o_assignment;
        o_kind := 'leased';
    END IF;
    -- What the page shows.
    SELECT p.messages INTO o_messages FROM {item} i JOIN {prompt} p ON p.id = i.prompt_id WHERE i.id = o_item;
    SELECT json_agg(json_build_array(ir.response_id, r.content)) INTO o_responses
      FROM {item_response} ir JOIN {response} r ON r.id = ir.response_id WHERE ir.item_id = o_item;
END
$fn$;
