"""Export at scale: 1M raw judgments to Parquet / JSONL against a plain DRF serializer list.

    python bench/export.py [--judgments 1000000] [--annotators 300] [--keep] [--json FILE]
                           [--baseline-max N] [--skip-baseline] [--profile]

(1) Drops and recreates the PostgreSQL database `arbiter_export_bench` (env BENCH_EXPORT_PG_DB),
runs `manage.py migrate`, and seeds one pairwise campaign (overlap 3, two criteria) with raw SQL
(`generate_series`): 300 annotators with memberships, N/3 prompts (a three-turn conversation
each), two replies of a few hundred characters per prompt from six models, the items and their
item-responses, N submitted assignments (display order, lease and completion times) and N
judgments (outcome, strength, per-criterion winners, a rationale on a quarter of them, an edited
reply on a few, time taken). Foreign-key triggers are off during the load
(`session_replication_role = replica`); every foreign key is then checked with one anti-join
each. A `ready` Dataset row whose snapshot covers every judgment is added (its comparisons are
one per item, also seeded in SQL), so the dataset exports run through `write_export` too.

(2) Measures each method in its own subprocess (peak RSS = `ru_maxrss` of that child):
  - api-parquet / api-jsonl: `exports.campaign_judgments_response` (what
    GET /api/v1/campaigns/<id>/judgments/export/ returns) for a WSGI request, body read to a file;
  - write_export parquet: `write_export(dataset, "judgments", "parquet", path)` (the snapshot's
    judgments: same rows, read through the snapshot query);
  - write_export preference jsonl: the dataset's comparisons (N/3 rows) plus one row per rewrite, for scale;
  - baseline: `JudgmentSerializer(qs, many=True).data` (a plain `ModelSerializer`, all fields)
    then `json.dumps` of it to a file. It is first run on `--baseline-probe` rows; if the
    extrapolated 1M run fits in ~10 GB and ~10 min it runs at N, else at the largest size that
    does (`--baseline-max` overrides), and the N figures are extrapolated (labelled as such).

(3) Checks the outputs (Parquet: `pq.ParquetFile(path).metadata.num_rows` and a full read with
pyarrow; JSONL: line count) and prints a markdown table. Without `--keep` the database and the
output files are removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.serve import PROMPT_TEXT, RESPONSE_TEXT, _django_setup, migrate  # noqa: E402
from config.secret_key import key_file_create, key_file_path  # noqa: E402

PYTHON = sys.executable
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
PG_DB_NAME = os.environ.get("BENCH_EXPORT_PG_DB", "arbiter_export_bench")
OVERLAP = 3
TARGET_MB = 500
MODELS = ["llama-3.1-70b", "qwen2.5-72b", "mistral-large", "gemma-2-27b", "gpt-4o-mini", "claude-haiku"]
FOLLOW_UP = ("Thanks. Can you shorten that to three bullet points and say which one you would pick "
             "for a high-contention counter table?")
RATIONALE = ("The preferred reply answers the question that was asked, gives a concrete example and "
             "does not invent an API; the other one is vaguer.")
EDIT_TAIL = " (Edited by the annotator: the example now uses SELECT ... FOR UPDATE SKIP LOCKED.)"


# ---------------------------------------------------------------------------------------------
# Django side: seeding (subprocess with DATABASE_URL set).
# ---------------------------------------------------------------------------------------------


def _seed(n_judgments: int, n_annotators: int) -> dict:
    from django.db import connection, transaction
    from django.db.models import F
    from django.utils import timezone as dj_tz

    from annotation.models import Campaign, Dataset, Role
    from annotation.services.campaigns import campaign_create, campaign_set_status, membership_add
    from bench.serve import _import_campaign_deltas, _seed_users

    n_items = -(-n_judgments // OVERLAP)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    manager, users = _seed_users(n_annotators)
    campaign = campaign_create(
        created_by=manager, name=f"export bench {n_judgments} judgments", overlap=OVERLAP,
        criteria=[{"name": "helpfulness", "label": "Helpfulness"}, {"name": "honesty", "label": "Honesty"}],
    )
    for u in users:
        membership_add(campaign=campaign, user=u, role=Role.ANNOTATOR)
    timings["users_s"] = round(time.perf_counter() - t0, 2)

    now = dj_tz.now()
    c = campaign.pk
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL synchronous_commit = off")
        # FK triggers off for the load (checked below with one anti-join per foreign key).
        cur.execute("SET LOCAL session_replication_role = replica")
        base = {}
        for t in ("prompt", "response", "item", "itemresponse", "assignment", "judgment"):
            cur.execute(f"SELECT COALESCE(MAX(id), 0) FROM annotation_{t}")  # noqa: S608
            base[t] = cur.fetchone()[0]
        cur.execute("CREATE TEMP TABLE bench_ann ON COMMIT DROP AS "
                    "SELECT (o - 1)::int AS idx, uid AS user_id FROM unnest(%s::bigint[]) WITH ORDINALITY AS u(uid, o)",
                    [[u.pk for u in users]])

        def step(name: str, sql: str, params: list) -> None:
            t = time.perf_counter()
            cur.execute(sql, params)
            timings[f"{name}_s"] = round(time.perf_counter() - t, 2)

        # Prompts: user / assistant / user, ~600 characters.
        step("prompts",
             "INSERT INTO annotation_prompt (id, campaign_id, external_id, messages, metadata, created_at) "
             "SELECT %(bp)s + g, %(c)s, 'p-' || g, jsonb_build_array("
             " jsonb_build_object('role', 'user', 'content', 'Question ' || g || ': ' || %(pt)s),"
             " jsonb_build_object('role', 'assistant', 'content', left(%(rt)s, 180 + (g %% 97))),"
             " jsonb_build_object('role', 'user', 'content', %(fu)s)),"
             " jsonb_build_object('source', 'bench', 'split', CASE WHEN g %% 10 = 0 THEN 'eval' ELSE 'train' END),"
             " %(now)s FROM generate_series(1, %(n)s) AS s(g)",
             dict(bp=base["prompt"], c=c, pt=PROMPT_TEXT, rt=RESPONSE_TEXT, fu=FOLLOW_UP, now=now, n=n_items))
        # Two replies per prompt, 300-700 characters, from six models.
        step("responses",
             "INSERT INTO annotation_response (id, prompt_id, content, model_name, metadata, created_at) "
             "SELECT %(br)s + 2 * (g - 1) + k + 1, %(bp)s + g, "
             " left(CASE k WHEN 0 THEN 'A. ' ELSE 'B. ' END || %(rt)s || %(rt)s, 300 + ((g * 31 + k * 17) %% 400)) "
             "  || ' [' || g || ']', "
             " (%(models)s::text[])[1 + ((g + k * 3) %% 6)], jsonb_build_object('temperature', 0.7), %(now)s "
             "FROM generate_series(1, %(n)s) AS s(g) CROSS JOIN (VALUES (0), (1)) AS v(k)",
             dict(br=base["response"], bp=base["prompt"], rt=RESPONSE_TEXT, models=MODELS, now=now, n=n_items))
        step("items",
             "INSERT INTO annotation_item (id, campaign_id, prompt_id, priority, gold, is_gold, target, judgment_count, "
             " lease_count, random_key, created_at) "
             "SELECT %(bi)s + g, %(c)s, %(bp)s + g, 0, NULL, false, %(o)s, LEAST(%(o)s, %(nj)s - (g - 1) * %(o)s), 0, "
             " random(), %(now)s FROM generate_series(1, %(n)s) AS s(g)",
             dict(bi=base["item"], c=c, bp=base["prompt"], o=OVERLAP, nj=n_judgments, now=now, n=n_items))
        step("itemresponses",
             "INSERT INTO annotation_itemresponse (id, item_id, response_id, position) "
             "SELECT %(bir)s + 2 * (g - 1) + k + 1, %(bi)s + g, %(br)s + 2 * (g - 1) + k + 1, k "
             "FROM generate_series(1, %(n)s) AS s(g) CROSS JOIN (VALUES (0), (1)) AS v(k)",
             dict(bir=base["itemresponse"], bi=base["item"], br=base["response"], n=n_items))
        # One submitted assignment per judgment: judgment g is the k-th of item i; annotators
        # (i + k * A/3) mod A are distinct per item. Display order is A|B or B|A.
        step("assignments",
             "INSERT INTO annotation_assignment (id, campaign_id, item_id, annotator_id, status, display_order, "
             " leased_at, expires_at, completed_at, skip_reason) "
             "SELECT %(ba)s + g, %(c)s, %(bi)s + i, a.user_id, 'submitted', "
             " CASE WHEN hashint4(g) & 1 = 0 THEN jsonb_build_array(ra, rb) ELSE jsonb_build_array(rb, ra) END, "
             " t, t + interval '600 seconds', t + make_interval(secs => 5 + (g * 7) %% 90), '' "
             "FROM (SELECT g, (g - 1) / %(o)s + 1 AS i, (g - 1) %% %(o)s AS k, "
             "  %(br)s + 2 * ((g - 1) / %(o)s) + 1 AS ra, %(br)s + 2 * ((g - 1) / %(o)s) + 2 AS rb, "
             "  %(now)s::timestamptz - make_interval(secs => %(nj)s - g) AS t "
             "  FROM generate_series(1, %(nj)s) AS s(g)) q "
             "JOIN bench_ann a ON a.idx = (q.i + q.k * (%(na)s / 3)) %% %(na)s",
             dict(ba=base["assignment"], c=c, bi=base["item"], br=base["response"], o=OVERLAP, now=now,
                  nj=n_judgments, na=n_annotators))
        # Judgments: 10 % tie, 3 % both bad, else preferred (strength 1-3); per-criterion winners;
        # a rationale on ~25 %, an edited reply on ~3 % of the preferred ones.
        step("judgments",
             "INSERT INTO annotation_judgment (id, campaign_id, item_id, assignment_id, annotator_id, outcome, "
             " preferred_response_id, strength, answer, rationale, edited_response, display_order, time_taken_ms, "
             " campaign_version, gold_correct, supersedes_id, created_at) "
             "SELECT %(bj)s + (id - %(ba)s), campaign_id, item_id, id, annotator_id, outcome, "
             " CASE WHEN outcome = 'preferred' THEN pref END, CASE WHEN outcome = 'preferred' THEN 1 + (r2 * 3)::int %% 3 END, "
             " jsonb_build_object('criteria', jsonb_build_object("
             "   'helpfulness', CASE WHEN outcome = 'preferred' THEN to_jsonb(pref) ELSE '\"tie\"'::jsonb END, "
             "   'honesty', CASE WHEN r3 < 0.3 THEN '\"tie\"'::jsonb WHEN outcome = 'preferred' THEN to_jsonb(pref) "
             "              ELSE to_jsonb((display_order->>0)::bigint) END)), "
             " CASE WHEN r3 < 0.25 THEN left(%(rat)s, 60 + (id %% 80)::int) ELSE '' END, "
             " CASE WHEN outcome = 'preferred' AND r3 > 0.97 THEN %(rt)s || %(edit)s ELSE '' END, "
             " display_order, 4000 + (r2 * 90000)::int, 1, NULL, NULL, completed_at "
             "FROM (SELECT a.*, "
             "  CASE WHEN r1 < 0.10 THEN 'tie' WHEN r1 < 0.13 THEN 'both_bad' ELSE 'preferred' END AS outcome, "
             "  (display_order->>(CASE WHEN r2 < 0.55 THEN 0 ELSE 1 END))::bigint AS pref "
             "  FROM (SELECT *, random() AS r1, random() AS r2, random() AS r3 FROM annotation_assignment "
             "        WHERE campaign_id = %(c)s) a) q",
             dict(bj=base["judgment"], ba=base["assignment"], c=c, rat=RATIONALE, rt=RESPONSE_TEXT, edit=EDIT_TAIL))
        step("memberships",
             "UPDATE annotation_membership m SET judged = j.n FROM (SELECT annotator_id, COUNT(*) AS n "
             "FROM annotation_judgment WHERE campaign_id = %(c)s GROUP BY annotator_id) j "
             "WHERE m.campaign_id = %(c)s AND m.user_id = j.annotator_id",
             dict(c=c))
        cur.execute("UPDATE annotation_campaigncounter SET judgments = %s, items_complete = %s "
                    "WHERE campaign_id = %s AND shard = 0", [n_judgments, n_judgments // OVERLAP, c])
        for t in ("prompt", "response", "item", "itemresponse", "assignment", "judgment"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('annotation_{t}', 'id'), "  # noqa: S608
                        f"(SELECT MAX(id) FROM annotation_{t}))")
    for name, per_item in _import_campaign_deltas(manager).items():
        Campaign.objects.filter(pk=c).update(**{name: F(name) + per_item * n_items})
    campaign_set_status(campaign=campaign, status=Campaign.Status.ACTIVE)

    # A ready dataset snapshot over every judgment; one comparison per item (chosen = the reply
    # preferred by the item's first judgment, else A), so the dataset exports have rows too.
    with connection.cursor() as cur:
        cur.execute("SELECT MAX(id) FROM annotation_judgment WHERE campaign_id = %s", [c])
        last = cur.fetchone()[0]
    dataset = Dataset.objects.create(
        campaign_id=c, version=1, method=Dataset.Method.MAJORITY, params={}, campaign_version=1,
        last_judgment_id=last, content_hash="bench-" + "0" * 58, item_count=n_items, comparison_count=n_items,
        judgment_count=n_judgments, annotator_count=n_annotators, status=Dataset.Status.READY,
        created_by=manager, finished_at=now,
    )
    with connection.cursor() as cur:
        step("analyze", "ANALYZE", [])
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL synchronous_commit = off")
        cur.execute("SET LOCAL session_replication_role = replica")
        step("comparisons",
             "INSERT INTO annotation_datasetcomparison (dataset_id, position, item_id, prompt, chosen_response_id, "
             " chosen_text, chosen_model, rejected_response_id, rejected_text, rejected_model, outcome, margin, "
             " confidence, n_judgments) "
             "SELECT %(d)s, row_number() OVER (ORDER BY i.id) - 1, i.id, p.messages, ch.id, ch.content, ch.model_name, "
             " rj.id, rj.content, rj.model_name, 'chosen', 1.0 + (i.id %% 3) * 0.5, 0.5 + (i.id %% 50) / 100.0, "
             " GREATEST(i.judgment_count, 1) "
             "FROM annotation_item i JOIN annotation_prompt p ON p.id = i.prompt_id "
             "JOIN (SELECT DISTINCT ON (item_id) item_id, "
             "      COALESCE(preferred_response_id, (display_order->>0)::bigint) AS chosen_id "
             "      FROM annotation_judgment WHERE campaign_id = %(c)s ORDER BY item_id, id) f ON f.item_id = i.id "
             "JOIN annotation_response ch ON ch.id = f.chosen_id "
             "JOIN annotation_response rj ON rj.prompt_id = p.id AND rj.id <> ch.id "
             "WHERE i.campaign_id = %(c)s",
             dict(d=dataset.pk, c=c))
    with connection.cursor() as cur:
        cur.execute("ANALYZE annotation_datasetcomparison")
    timings["total_s"] = round(time.perf_counter() - t0, 2)
    return {"campaign_id": c, "dataset_id": dataset.pk, "timings": timings, "checks": _check_seed(c, n_judgments)}


def _check_seed(campaign_id: int, n_judgments: int) -> dict:
    """Every foreign key of the seeded rows resolves (the load ran with FK triggers off), and counts add up."""
    from django.apps import apps
    from django.db import connection
    from django.db.models import ForeignKey

    problems: list[str] = []
    t = time.perf_counter()
    with connection.cursor() as cur:
        for name in ("Prompt", "Response", "Item", "ItemResponse", "Assignment", "Judgment", "DatasetComparison"):
            model = apps.get_model("annotation", name)
            for f in model._meta.concrete_fields:
                if not isinstance(f, ForeignKey):
                    continue
                child, parent = model._meta.db_table, f.related_model._meta.db_table
                cur.execute(
                    f"SELECT COUNT(*) FROM {child} x WHERE x.{f.column} IS NOT NULL AND NOT EXISTS "  # noqa: S608
                    f"(SELECT 1 FROM {parent} y WHERE y.id = x.{f.column})"
                )
                if (bad := cur.fetchone()[0]):
                    problems.append(f"{child}.{f.column}: {bad} dangling")
        cur.execute("SELECT COUNT(*), COUNT(DISTINCT assignment_id), COUNT(DISTINCT (item_id, annotator_id)), "
                    "SUM((outcome = 'preferred')::int), SUM((preferred_response_id IS NOT NULL)::int), "
                    "AVG(length(rationale)), SUM((edited_response <> '')::int) "
                    "FROM annotation_judgment WHERE campaign_id = %s", [campaign_id])
        n, n_asg, n_pairs, n_pref, n_pref_id, avg_rat, n_edit = cur.fetchone()
        # The preferred response is one of the two the item shows.
        cur.execute("SELECT COUNT(*) FROM annotation_judgment j WHERE j.campaign_id = %s AND j.preferred_response_id "
                    "IS NOT NULL AND NOT j.display_order @> to_jsonb(j.preferred_response_id)", [campaign_id])
        wrong_pref = cur.fetchone()[0]
        cur.execute("SELECT AVG(length(content)) FROM annotation_response")
        avg_reply = cur.fetchone()[0]
        cur.execute("SELECT AVG(length(messages::text)) FROM annotation_prompt")
        avg_prompt = cur.fetchone()[0]
    if n != n_judgments or n_asg != n or n_pairs != n:
        problems.append(f"judgments {n}, assignments {n_asg}, (item, annotator) pairs {n_pairs}; want {n_judgments}")
    if n_pref != n_pref_id or wrong_pref:
        problems.append(f"preferred: {n_pref} outcomes, {n_pref_id} ids, {wrong_pref} not shown")
    return {"ok": not problems, "problems": problems, "fk_check_s": round(time.perf_counter() - t, 2),
            "judgments": n, "preferred": n_pref, "edited": n_edit, "avg_rationale_chars": round(float(avg_rat), 1),
            "avg_reply_chars": round(float(avg_reply), 1), "avg_prompt_json_chars": round(float(avg_prompt), 1)}


# ---------------------------------------------------------------------------------------------
# Django side: one measured export (its own subprocess, so ru_maxrss is this method's peak).
# ---------------------------------------------------------------------------------------------


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _hwm_mb() -> float:
    """VmHWM: this process image's own peak RSS (reset by exec, unlike ru_maxrss, which Linux carries over
    from the forking parent; the driver stays small so both agree)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _measure(method: str, ids: dict, out_path: str, limit: int | None, profile: bool) -> dict:
    from django.db import connection
    from django.test import RequestFactory

    from annotation import exports
    from annotation.models import Campaign, Dataset

    campaign = Campaign.objects.get(pk=ids["campaign_id"])
    dataset = Dataset.objects.get(pk=ids["dataset_id"])
    connection.ensure_connection()
    if profile:
        import tracemalloc

        tracemalloc.start(25)
    start_rss = _current_rss_mb()
    first: float | None = None
    rows: int | None = None
    t0 = time.perf_counter()
    if method in ("api-parquet", "api-jsonl"):
        fmt = method.split("-")[1]
        request = RequestFactory().get(f"/api/v1/campaigns/{campaign.pk}/judgments/export/?format={fmt}")
        response = exports.campaign_judgments_response(request, campaign, fmt)
        with open(out_path, "wb") as f:
            for chunk in response:  # what the WSGI server does with the body
                if first is None:
                    first = time.perf_counter() - t0
                f.write(chunk)
        response.close()
    elif method == "write_export-parquet":
        exports.write_export(dataset, "judgments", "parquet", out_path)
    elif method == "write_export-preference-jsonl":
        exports.write_export(dataset, "preference", "jsonl", out_path)
    elif method == "baseline":
        from rest_framework import serializers

        from annotation.models import Judgment

        class JudgmentSerializer(serializers.ModelSerializer):
            class Meta:
                model = Judgment
                fields = "__all__"

        qs = Judgment.objects.filter(campaign=campaign).order_by("pk")
        if limit:
            qs = qs[:limit]
        data = JudgmentSerializer(qs, many=True).data
        rows = len(data)
        with open(out_path, "w") as f:
            f.write(json.dumps(data))
    else:
        raise SystemExit(f"unknown method {method}")
    wall = time.perf_counter() - t0
    result = {"method": method, "wall_s": round(wall, 2), "peak_rss_mb": round(_rss_mb(), 1),
              "vm_hwm_mb": round(_hwm_mb(), 1),
              "start_rss_mb": round(start_rss, 1), "end_rss_mb": round(_current_rss_mb(), 1),
              "first_chunk_s": round(first, 2) if first is not None else None, "rows": rows,
              "bytes": os.path.getsize(out_path)}
    if profile:
        import tracemalloc

        current, peak = tracemalloc.get_traced_memory()
        snap = tracemalloc.take_snapshot()
        result["tracemalloc"] = {
            "current_mb": round(current / 2**20, 1), "peak_mb": round(peak / 2**20, 1),
            "top": [f"{s.size / 2**20:.1f} MB in {s.count} blocks: {s.traceback.format()[-1].strip()}"
                    for s in snap.statistics("traceback")[:8]],
        }
        try:
            import pyarrow as pa

            result["pyarrow_allocated_mb"] = round(pa.total_allocated_bytes() / 2**20, 1)
            result["pyarrow_pool"] = pa.default_memory_pool().backend_name
            result["pyarrow_pool_max_mb"] = round(pa.default_memory_pool().max_memory() / 2**20, 1)
        except ImportError:
            pass
    return result


def django_main(argv: list[str]) -> None:
    _django_setup()
    cmd = argv[0]
    if cmd == "seed":
        result = _seed(int(argv[1]), int(argv[2]))
    elif cmd == "check":
        result = check_output(Path(argv[1]), argv[2], int(argv[3]))
    elif cmd == "measure":
        method, ids, out_path, limit, profile = argv[1], json.loads(argv[2]), argv[3], int(argv[4]), argv[5] == "1"
        result = _measure(method, ids, out_path, limit or None, profile)
    else:
        raise SystemExit(f"unknown --_django command {cmd}")
    print("BENCH-JSON " + json.dumps(result))


def django_call(db_url: str, data_dir: str, *args: str, timeout: float | None = None,
                mem_limit_gb: float | None = None) -> dict:
    env = dict(os.environ, DATABASE_URL=db_url, ARBITER_DATA_DIR=data_dir, ARBITER_LOG_LEVEL="WARNING")

    def limit() -> None:
        if mem_limit_gb:
            import resource

            cap = int(mem_limit_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    proc = subprocess.run([PYTHON, __file__, "--_django", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=limit if mem_limit_gb else None)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH-JSON "):
            return json.loads(line[len("BENCH-JSON "):])
    raise RuntimeError(f"django subprocess {args[:2]} failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                       f"{proc.stderr[-5000:]}")


# ---------------------------------------------------------------------------------------------
# Driver.
# ---------------------------------------------------------------------------------------------


def pg_recreate() -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                     "AND pid <> pg_backend_pid()", [PG_DB_NAME])
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_DB_NAME}"')
        conn.execute(f'CREATE DATABASE "{PG_DB_NAME}"')
    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{PG_DB_NAME}"


def pg_drop() -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                     "AND pid <> pg_backend_pid()", [PG_DB_NAME])
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_DB_NAME}"')


def count_rewrites(db_url: str) -> int:
    """Judgments whose annotator rewrote a reply: each adds a row to the preference export."""
    import psycopg

    with psycopg.connect(db_url.replace("postgres://", "postgresql://", 1)) as conn:
        return conn.execute(
            "SELECT count(*) FROM annotation_judgment j JOIN annotation_item i ON i.id = j.item_id "
            "WHERE j.edited_response <> '' AND NOT i.is_gold"
        ).fetchone()[0]


def check_output(path: Path, fmt: str, want: int) -> dict:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        n_meta = pf.metadata.num_rows
        table = pq.read_table(path)
        ok = n_meta == want and table.num_rows == want
        return {"ok": ok, "rows": n_meta, "row_groups": pf.metadata.num_row_groups,
                "columns": table.num_columns, "check": f"num_rows {n_meta:,}, read {table.num_rows:,}"}
    if fmt == "jsonl":
        n = 0
        with open(path, "rb") as f:
            first = f.readline()
            n = 1 if first else 0
            for _ in f:
                n += 1
        keys = sorted(json.loads(first)) if first else []
        return {"ok": n == want, "rows": n, "check": f"{n:,} lines", "keys": keys}
    with open(path) as f:
        data = json.load(f)
    return {"ok": len(data) == want, "rows": len(data), "check": f"JSON array of {len(data):,}"}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_django":
        django_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--judgments", type=int, default=1_000_000)
    ap.add_argument("--annotators", type=int, default=300)
    ap.add_argument("--baseline-probe", type=int, default=100_000, help="rows for the baseline's first, sizing run")
    ap.add_argument("--baseline-max", type=int, default=0, help="cap the baseline at this many rows (0: decide)")
    ap.add_argument("--baseline-mem-gb", type=float, default=10.0)
    ap.add_argument("--baseline-time-s", type=float, default=600.0)
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--profile", action="store_true", help="also run api-parquet under tracemalloc")
    ap.add_argument("--reuse", action="store_true", help="skip seeding: reuse a kept database (ids from --ids)")
    ap.add_argument("--ids", default="", help='with --reuse: {"campaign_id": .., "dataset_id": ..}')
    ap.add_argument("--keep", action="store_true", help="keep the database and output files")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    n = args.judgments
    n_items = -(-n // OVERLAP)
    tmp = Path(tempfile.mkdtemp(prefix="arbiter-export-bench-"))
    data_dir = str(tmp / "data")
    os.makedirs(data_dir)
    key_file_create(key_file_path(Path(data_dir)))  # a fresh installation's key file, as `make run` makes
    report: dict = {"judgments": n, "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                    "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
                    "results": []}
    try:
        if args.reuse:
            db_url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{PG_DB_NAME}"
            ids = json.loads(args.ids)
        else:
            t = time.perf_counter()
            db_url = pg_recreate()
            migrate(db_url, data_dir)
            report["migrate_s"] = round(time.perf_counter() - t, 1)
            t = time.perf_counter()
            seed = django_call(db_url, data_dir, "seed", str(n), str(args.annotators))
            report["seed"] = seed
            report["seed_s"] = round(time.perf_counter() - t, 1)
            print(f"seeded {n:,} judgments in {report['seed_s']} s: {json.dumps(seed)}", flush=True)
            if not seed["checks"]["ok"]:
                raise SystemExit(f"seed check failed: {seed['checks']['problems']}")
            ids = {"campaign_id": seed["campaign_id"], "dataset_id": seed["dataset_id"]}
        report["ids"] = ids

        def run(method: str, fmt: str, want: int, limit: int = 0, profile: bool = False, **kw) -> dict:
            out = tmp / f"{method}.{fmt}"
            r = django_call(db_url, data_dir, "measure", method, json.dumps(ids), str(out), str(limit),
                            "1" if profile else "0", **kw)
            # Checked in another child: the driver must stay small (a child's ru_maxrss starts at the
            # RSS of the process that forked it) and the check loads the whole file.
            r.update(django_call(db_url, data_dir, "check", str(out), fmt, str(want)))
            r["rows_per_s"] = round(r["rows"] / r["wall_s"], 0) if r["wall_s"] else None
            if not args.keep:
                out.unlink(missing_ok=True)
            print(f"{method} ({r['rows']:,} rows): {json.dumps(r)}", flush=True)
            return r

        # The preference file holds the decided comparisons plus one row per rewrite.
        arbiter = [
            ("api-parquet", "parquet", n), ("api-jsonl", "jsonl", n), ("write_export-parquet", "parquet", n),
            ("write_export-preference-jsonl", "jsonl", n_items + count_rewrites(db_url)),
        ]
        for method, fmt, want in arbiter:
            report["results"].append(run(method, fmt, want))
        if args.profile or report["results"][0]["peak_rss_mb"] >= TARGET_MB:
            report["profile"] = run("api-parquet", "parquet", n, profile=True)

        if not args.skip_baseline:
            probe_n = min(args.baseline_probe, n)
            probe = run("baseline", "json", probe_n, limit=probe_n, timeout=args.baseline_time_s * 2,
                        mem_limit_gb=args.baseline_mem_gb + 2)
            probe["label"] = "probe"
            report["results"].append(probe)
            per_row_mb = max(probe["peak_rss_mb"] - probe["start_rss_mb"], 1) / probe_n
            per_row_s = probe["wall_s"] / probe_n
            fits = int(min((args.baseline_mem_gb * 1024 - probe["start_rss_mb"]) / per_row_mb,
                           args.baseline_time_s / per_row_s) * 0.9)
            size = min(n, args.baseline_max or fits)
            report["baseline_plan"] = {"per_row_kb": round(per_row_mb * 1024, 2), "per_row_us": round(per_row_s * 1e6, 1),
                                       "fits_rows": fits, "size": size}
            print(f"baseline plan: {report['baseline_plan']}", flush=True)
            if size > probe_n:
                full = run("baseline", "json", size, limit=size, timeout=args.baseline_time_s * 2,
                           mem_limit_gb=args.baseline_mem_gb + 2)
                report["results"].append(full)
            else:
                full = probe
            if full["rows"] < n:  # linear extrapolation from the largest run, labelled as such
                scale = n / full["rows"]
                report["baseline_extrapolated"] = {
                    "rows": n, "wall_s": round(full["wall_s"] * scale, 1),
                    "peak_rss_mb": round(full["start_rss_mb"] + (full["peak_rss_mb"] - full["start_rss_mb"]) * scale, 0),
                }
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
            if not args.reuse:
                pg_drop()
        else:
            print(f"kept: database {PG_DB_NAME}, files in {tmp}")
    md = table(report)
    report["table"] = md
    print()
    print(md)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


def table(report: dict) -> str:
    n = report["judgments"]
    rows = report["results"]
    arb = next(r for r in rows if r["method"] == "api-parquet")
    base = [r for r in rows if r["method"] == "baseline"]
    full = base[-1] if base else None
    labels = {
        "api-parquet": "Arbiter: campaign judgments export, Parquet (API path)",
        "api-jsonl": "Arbiter: campaign judgments export, JSONL (API path)",
        "write_export-parquet": "Arbiter: `write_export(dataset, \"judgments\", \"parquet\")`",
        "write_export-preference-jsonl": "Arbiter: `write_export(dataset, \"preference\", \"jsonl\")` (comparisons)",
        "baseline": "baseline: `ModelSerializer(many=True).data` + `json.dumps`",
    }
    out = [f"{n:,} judgments ({report['date']}, {report['machine']})", "",
           "| method | rows | wall s | rows/s | peak RSS MB (start) | first chunk s | output MB | check |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        name = labels[r["method"]] + (" (sizing probe)" if r.get("label") == "probe" else "")
        out.append(f"| {name} | {r['rows']:,} | {r['wall_s']:.1f} | {r['rows_per_s']:,.0f} | "
                   f"{r['peak_rss_mb']:,.0f} ({r['start_rss_mb']:,.0f}) | "
                   f"{r['first_chunk_s'] if r['first_chunk_s'] is not None else '–'} | {r['bytes'] / 2**20:,.0f} | "
                   f"{'OK' if r['ok'] else 'FAIL'}: {r['check']} |")
    ex = report.get("baseline_extrapolated")
    if ex:
        out.append(f"| baseline, **extrapolated** linearly to {n:,} (not measured) | {n:,} | {ex['wall_s']:.0f} | "
                   f"{n / ex['wall_s']:,.0f} | {ex['peak_rss_mb']:,.0f} | – | – | extrapolated |")
    out.append("")
    out.append(f"Target: Arbiter's Parquet export of {n:,} judgments under {TARGET_MB} MB peak — "
               f"{'met' if arb['peak_rss_mb'] < TARGET_MB else 'MISSED'} ({arb['peak_rss_mb']:,.0f} MB).")
    if full:
        b_rps = full["rows_per_s"] if not ex else n / ex["wall_s"]
        b_mem = full["peak_rss_mb"] if not ex else ex["peak_rss_mb"]
        tag = " (baseline extrapolated)" if ex else ""
        out.append(f"Parquet export vs baseline at {n:,}{tag}: {arb['rows_per_s'] / b_rps:.2f}x the rows/s, "
                   f"{arb['peak_rss_mb'] / b_mem:.2f}x the peak memory ({b_mem / arb['peak_rss_mb']:.1f}x less).")
    prof = report.get("profile")
    if prof and "tracemalloc" in prof:
        out += ["", f"tracemalloc (api-parquet): peak {prof['tracemalloc']['peak_mb']} MB traced; top at the end:"]
        out += [f"- {line}" for line in prof["tracemalloc"]["top"]]
    return "\n".join(out)


if __name__ == "__main__":
    main()
