"""Load benchmark for task serving: simulated annotators doing next + submit over real HTTP.

    python bench/serve.py [--quick] [--db postgres|sqlite|both] [--items 10000,1000000]
                          [--annotators 1,4,16,64] [--workers 2] [--duration 12] [--warmup 2]

For each database and campaign size it (1) creates a fresh database (PostgreSQL: drops and
recreates `arbiter_bench`; SQLite: a new file in a temp folder), runs `manage.py migrate`, and
seeds users, tokens, a campaign (pairwise, overlap 3, active, lease 600 s) and its items with
raw SQL (checked against rows made by `items_import`); (2) starts the real ASGI server
(uvicorn, `config.asgi:application`, by `python -m config.serve`) as a subprocess on a free
loopback port; (3) for each annotator count runs a bounded load: every simulated annotator
has one keep-alive HTTP/1.1 connection and loops next -> submit until the window ends (it
finishes its current item first, so no lease is left open); (4) checks the serving invariants
in SQL; (5) prints one markdown table, the 1M/10k latency ratio of `next`, and where the CPU
went.

Each annotator count uses its own, fresh annotators; the campaign's state carries over from one
count to the next (items partly judged), as it would in a real campaign.

No dependency beyond the app's own: the HTTP client is a small asyncio HTTP/1.1 client.
Django is only imported in the seeding / checking subprocesses (`--_django ...`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
PG_DB_NAME = os.environ.get("BENCH_PG_DB", "arbiter_bench")
OVERLAP = 3
LEASE_SECONDS = 600
TIE_SHARE = 0.1
# Label Studio 1.23, default SQLite, 5,000 tasks, overlap 3 (judgments/s by annotator count);
# the upper end of each measured range, so the ratio is the conservative one.
PEER = {1: 4.4, 4: 7.0, 12: 4.6}


def peer_figure(n: int) -> tuple[int, float]:
    """The peer's figure at the nearest annotator count it was measured at."""
    k = min(PEER, key=lambda c: (abs(c - n), -c))
    return k, PEER[k]


# ---------------------------------------------------------------------------------------------
# Django side (runs in a subprocess with DATABASE_URL set): seed and check.
# ---------------------------------------------------------------------------------------------

PROMPT_TEXT = (
    "Explain, for a new engineer on the team, the trade-offs between optimistic and pessimistic "
    "locking in a relational database, with one example of each."
)
RESPONSE_TEXT = (
    "Optimistic locking assumes conflicts are rare: read a version number, do the work, and make "
    "the write conditional on the version being unchanged, retrying on conflict. Pessimistic "
    "locking takes the lock first (SELECT ... FOR UPDATE) so others wait. The first wins when "
    "contention is low and transactions are long; the second when contention is high. "
)


def _django_setup() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def _seed_users(n_annotators: int) -> tuple:
    """Create the bench manager and `n_annotators` annotators (no usable passwords); return them."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group

    from annotation.models import Role

    User = get_user_model()
    g_ann, _ = Group.objects.get_or_create(name=Role.ANNOTATOR)
    g_man, _ = Group.objects.get_or_create(name=Role.MANAGER)
    manager = User.objects.create_user("bench-manager", password=None)
    manager.groups.add(g_man)
    unusable = make_password(None)
    users = User.objects.bulk_create(
        [User(username=f"bench-annotator-{i:04d}", password=unusable) for i in range(n_annotators)]
    )
    User.groups.through.objects.bulk_create([User.groups.through(user_id=u.pk, group_id=g_ann.pk) for u in users])
    return manager, users


def _seed(n_items: int, n_annotators: int) -> dict:
    from django.db import connection, transaction
    from django.db.models import F
    from django.utils import timezone as dj_tz
    from rest_framework.authtoken.models import Token

    from annotation.models import Campaign, Role
    from annotation.services.campaigns import campaign_create, campaign_set_status, membership_add

    timings = {}
    t0 = time.perf_counter()
    manager, users = _seed_users(n_annotators)
    tokens = Token.objects.bulk_create([Token(user=u, key=Token.generate_key()) for u in users])
    campaign = campaign_create(
        created_by=manager, name=f"bench {n_items} items", overlap=OVERLAP, lease_seconds=LEASE_SECONDS
    )
    for u in users:
        membership_add(campaign=campaign, user=u, role=Role.ANNOTATOR)
    timings["users_s"] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    now = connection.ops.adapt_datetimefield_value(dj_tz.now())
    pg = connection.vendor == "postgresql"
    with transaction.atomic(), connection.cursor() as cur:
        if pg:
            cur.execute("SET LOCAL synchronous_commit = off")
        bases = {}
        for table in ("annotation_prompt", "annotation_response", "annotation_item", "annotation_itemresponse"):
            cur.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}")  # noqa: S608
            bases[table] = cur.fetchone()[0]
        bp, br, bi, bir = (bases[t] for t in ("annotation_prompt", "annotation_response", "annotation_item",
                                              "annotation_itemresponse"))
        if pg:
            series = "generate_series(1, %s) AS s(g)"
            messages = "jsonb_build_array(jsonb_build_object('role', 'user', 'content', 'Prompt ' || g || ': ' || %s))"
            empty = "'{}'::jsonb"
            rand = "random()"
            false = "false"
            with_ = ""
        else:
            series = "s"
            messages = "json_array(json_object('role', 'user', 'content', 'Prompt ' || g || ': ' || %s))"
            empty = "'{}'"
            rand = "(random() / 18446744073709551616.0 + 0.5)"  # uniform in [0, 1)
            false = "0"
            with_ = "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < %s) "
        two = "(SELECT 0 AS k UNION ALL SELECT 1) AS v"

        def run(sql: str, params: list) -> None:
            # SQLite: the CTE goes first and takes the row count; PostgreSQL: generate_series does.
            sql = sql.replace("@WITH@", with_).replace("@SERIES@", series).replace("@MESSAGES@", messages)
            sql = sql.replace("@HASH@", "lpad(to_hex(g), 64, '0')" if pg else "printf('%%064x', g)")
            cur.execute(sql.replace("@EMPTY@", empty).replace("@RAND@", rand).replace("@FALSE@", false), params)

        t = time.perf_counter()
        run(
            "INSERT INTO annotation_prompt (id, external_id, messages, metadata, created_at, campaign_id) "
            "@WITH@SELECT %s + g, '', @MESSAGES@, @EMPTY@, %s, %s FROM @SERIES@",
            [n_items, bp, PROMPT_TEXT, now, campaign.pk] if not pg else [bp, PROMPT_TEXT, now, campaign.pk, n_items],
        )
        timings["prompts_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        run(
            "INSERT INTO annotation_response (id, content, model_name, metadata, created_at, prompt_id) "
            "@WITH@SELECT %s + 2 * (g - 1) + k + 1, "
            "CASE k WHEN 0 THEN 'A. ' ELSE 'B. ' END || %s || ' (' || g || ')', "
            "CASE k WHEN 0 THEN 'bench-model-a' ELSE 'bench-model-b' END, "
            "@EMPTY@, %s, %s + g FROM @SERIES@ CROSS JOIN " + two,
            [n_items, br, RESPONSE_TEXT, now, bp] if not pg else [br, RESPONSE_TEXT, now, bp, n_items],
        )
        timings["responses_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        run(
            # content_hash: a distinct 64-hex value per item, where an import stores the sha256 of the
            # normalized texts (the benchmark never imports into the seeded campaign).
            "INSERT INTO annotation_item (id, priority, gold, is_gold, target, judgment_count, lease_count, "
            "random_key, created_at, campaign_id, prompt_id, content_hash) "
            "@WITH@SELECT %s + g, 0, NULL, @FALSE@, %s, 0, 0, @RAND@, %s, %s, %s + g, @HASH@ FROM @SERIES@",
            [n_items, bi, OVERLAP, now, campaign.pk, bp] if not pg else [bi, OVERLAP, now, campaign.pk, bp, n_items],
        )
        timings["items_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        run(
            "INSERT INTO annotation_itemresponse (id, position, item_id, response_id) "
            "@WITH@SELECT %s + 2 * (g - 1) + k + 1, k, %s + g, %s + 2 * (g - 1) + k + 1 "
            "FROM @SERIES@ CROSS JOIN " + two,
            [n_items, bir, bi, br] if not pg else [bir, bi, br, n_items],
        )
        timings["itemresponses_s"] = round(time.perf_counter() - t, 2)
        if pg:
            for table in ("annotation_prompt", "annotation_response", "annotation_item", "annotation_itemresponse"):
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"  # noqa: S608
                )
    t = time.perf_counter()
    with connection.cursor() as cur:
        # Autovacuum would analyze after a bulk insert this size within a minute; do it now so
        # every run starts from the same statistics.
        cur.execute("ANALYZE")
    timings["analyze_s"] = round(time.perf_counter() - t, 2)
    timings["items_total_s"] = round(time.perf_counter() - t0, 2)

    # Whatever campaign-level counters items_import keeps (e.g. wanted_judgments), keep them too:
    # learn the per-item change from a real two-item import and apply it n_items times.
    applied = {}
    for name, per_item in _import_campaign_deltas(manager).items():
        Campaign.objects.filter(pk=campaign.pk).update(**{name: F(name) + per_item * n_items})
        applied[name] = per_item * n_items
    campaign_set_status(campaign=campaign, status=Campaign.Status.ACTIVE)
    check = _compare_with_import(campaign, manager)
    check["campaign_counters_applied"] = applied
    return {
        "campaign_id": campaign.pk,
        "tokens": [t.key for t in tokens],
        "timings": timings,
        "seed_check": check,
        "vendor": connection.vendor,
    }


def _ref_lines(n: int) -> list[str]:
    return [
        json.dumps({"messages": [{"role": "user", "content": f"Prompt {i}: " + PROMPT_TEXT}],
                    "responses": [{"content": f"A{i}", "model": "bench-model-a"},
                                  {"content": f"B{i}", "model": "bench-model-b"}]})
        for i in range(n)  # distinct lines: an import refuses repeats
    ]


def _import_campaign_deltas(manager) -> dict[str, int]:
    """Per-item change items_import makes to numeric Campaign fields (counters it keeps)."""
    from django.db import models as m

    from annotation.models import Campaign
    from annotation.services.campaigns import campaign_create
    from annotation.services.imports import items_import

    ref = campaign_create(created_by=manager, name="bench delta probe", overlap=OVERLAP, lease_seconds=LEASE_SECONDS)
    fields = [f.name for f in Campaign._meta.concrete_fields
              if isinstance(f, m.IntegerField | m.FloatField) and not f.primary_key and not f.is_relation]
    before = Campaign.objects.filter(pk=ref.pk).values(*fields).get()
    items_import(campaign=ref, lines=_ref_lines(2))
    after = Campaign.objects.filter(pk=ref.pk).values(*fields).get()
    Campaign.objects.filter(pk=ref.pk).delete()
    return {f: (after[f] - before[f]) // 2 for f in fields if after[f] != before[f]}


def _compare_with_import(campaign, manager) -> dict:
    """Import two items with `items_import` into a scratch campaign and compare rows column by column."""
    from django.db import connection

    from annotation.models import Campaign
    from annotation.services.campaigns import campaign_create
    from annotation.services.imports import items_import

    ref = campaign_create(created_by=manager, name="bench reference import", overlap=OVERLAP, lease_seconds=LEASE_SECONDS)
    items_import(campaign=ref, lines=_ref_lines(2))
    problems: list[str] = []

    def rows(sql: str, params: list) -> tuple[list[str], list[tuple]]:
        with connection.cursor() as cur:
            cur.execute(sql, params)
            return [c[0] for c in cur.description], cur.fetchall()

    same_cols = {  # columns whose values must match exactly between seeded and imported rows
        "annotation_item": ["priority", "gold", "is_gold", "target", "judgment_count", "lease_count"],
        "annotation_prompt": ["external_id", "metadata"],
        "annotation_response": ["metadata"],
    }
    for table, where in (
        ("annotation_item", "campaign_id = %s"),
        ("annotation_prompt", "campaign_id = %s"),
        ("annotation_response", "prompt_id IN (SELECT id FROM annotation_prompt WHERE campaign_id = %s)"),
        ("annotation_itemresponse", "item_id IN (SELECT id FROM annotation_item WHERE campaign_id = %s)"),
    ):
        sql = f"SELECT * FROM {table} WHERE {where} ORDER BY id LIMIT 4"  # noqa: S608
        cols_s, seeded = rows(sql, [campaign.pk])
        cols_r, imported = rows(sql, [ref.pk])
        if cols_s != cols_r:
            problems.append(f"{table}: columns differ")
        for r in seeded + imported:  # NULL only where the import leaves NULL
            for c, v in zip(cols_s, r, strict=True):
                if v is None and not (table == "annotation_item" and c == "gold"):
                    problems.append(f"{table}.{c} is NULL")
        for c in same_cols.get(table, []):
            i = cols_s.index(c)
            vs = {json.dumps(r[i], sort_keys=True, default=str) for r in seeded}
            vr = {json.dumps(r[i], sort_keys=True, default=str) for r in imported}
            if vs != vr:
                problems.append(f"{table}.{c}: seeded {vs} != imported {vr}")
        if table == "annotation_itemresponse":
            pos = cols_s.index("position")
            if sorted(r[pos] for r in seeded) != sorted(r[pos] for r in imported):
                problems.append("itemresponse positions differ")
    # Values read back through the ORM the way the API reads them.
    from annotation.models import Item

    for it in Item.objects.filter(campaign=campaign).select_related("prompt")[:2]:
        msgs = it.prompt.messages
        if not (isinstance(msgs, list) and msgs and set(msgs[0]) == {"role", "content"}):
            problems.append(f"prompt.messages not a list of messages: {msgs!r}")
        if [ir.position for ir in it.item_responses.order_by("position")] != [0, 1]:
            problems.append("item responses are not at positions 0, 1")
    with connection.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*), COUNT(DISTINCT random_key), MIN(random_key), MAX(random_key), "
            "MIN(target), MAX(target), SUM(judgment_count + lease_count) FROM annotation_item WHERE campaign_id = %s",
            [campaign.pk],
        )
        n, distinct, lo, hi, tmin, tmax, used = cur.fetchone()
    if distinct < n * 0.999 or lo < 0 or hi >= 1:
        problems.append(f"random_key not uniform in [0,1): {distinct}/{n} distinct, {lo}..{hi}")
    if (tmin, tmax) != (OVERLAP, OVERLAP) or used:
        problems.append(f"target {tmin}..{tmax} (want {OVERLAP}), counts {used}")
    Campaign.objects.filter(pk=ref.pk).delete()
    return {"ok": not problems, "problems": problems[:10], "items": n, "random_key": [lo, hi]}


def _check(campaign_id: int, seen_path: str) -> dict:
    """The serving invariants, in SQL, after a run."""
    from django.db import connection

    seen = json.loads(Path(seen_path).read_text())
    judgment_ids, assignment_ids = seen["judgments"], seen["assignments"]
    out = {}
    with connection.cursor() as cur:

        def one(sql: str, params: list) -> int:
            cur.execute(sql, params)
            return int(cur.fetchone()[0] or 0)

        c = [campaign_id]
        out["over_target"] = one(
            "SELECT COUNT(*) FROM annotation_item WHERE campaign_id = %s AND judgment_count + lease_count > target", c
        )
        out["count_mismatch"] = one(
            "SELECT COUNT(*) FROM annotation_item i LEFT JOIN (SELECT item_id, COUNT(*) AS n FROM annotation_judgment "
            "WHERE campaign_id = %s AND supersedes_id IS NULL GROUP BY item_id) j ON j.item_id = i.id "
            "WHERE i.campaign_id = %s AND i.judgment_count <> COALESCE(j.n, 0)",
            c + c,
        )
        out["lease_mismatch"] = one(
            "SELECT COUNT(*) FROM annotation_item i LEFT JOIN (SELECT item_id, COUNT(*) AS n FROM annotation_assignment "
            "WHERE campaign_id = %s AND status = 'leased' GROUP BY item_id) a ON a.item_id = i.id "
            "WHERE i.campaign_id = %s AND i.lease_count <> COALESCE(a.n, 0)",
            c + c,
        )
        out["duplicate_assignments"] = one(
            "SELECT COUNT(*) FROM (SELECT item_id, annotator_id FROM annotation_assignment WHERE campaign_id = %s "
            "GROUP BY item_id, annotator_id HAVING COUNT(*) > 1) d",
            c,
        )
        missing = 0
        for start in range(0, len(judgment_ids), 500):
            chunk = judgment_ids[start : start + 500]
            marks = ",".join(["%s"] * len(chunk))
            found = one(
                f"SELECT COUNT(*) FROM annotation_judgment j JOIN annotation_assignment a ON a.id = j.assignment_id "  # noqa: S608
                f"WHERE j.id IN ({marks}) AND a.status = 'submitted' AND j.campaign_id = %s",
                chunk + c,
            )
            missing += len(chunk) - found
        out["acked_judgments_missing"] = missing
        out["judgments_in_db"] = one(
            "SELECT COUNT(*) FROM annotation_judgment WHERE campaign_id = %s AND supersedes_id IS NULL", c
        )
        out["acked_judgments"] = len(set(judgment_ids))
        out["acked_duplicates"] = len(judgment_ids) - len(set(judgment_ids))
        out["open_leases"] = one(
            "SELECT COUNT(*) FROM annotation_assignment WHERE campaign_id = %s AND status = 'leased'", c
        )
        out["assignments_seen"] = len(set(assignment_ids))
    violations = (
        out["over_target"] + out["count_mismatch"] + out["lease_mismatch"] + out["duplicate_assignments"]
        + out["acked_judgments_missing"] + out["acked_duplicates"]
        + (out["acked_judgments"] > out["judgments_in_db"])
    )
    out["violations"] = violations
    return out


def django_main(argv: list[str]) -> None:
    _django_setup()
    cmd = argv[0]
    if cmd == "seed":
        result = _seed(int(argv[1]), int(argv[2]))
    elif cmd == "check":
        result = _check(int(argv[1]), argv[2])
    else:
        raise SystemExit(f"unknown --_django command {cmd}")
    print("BENCH-JSON " + json.dumps(result))


def django_call(db_url: str, data_dir: str, *args: str) -> dict:
    env = dict(os.environ, DATABASE_URL=db_url, ARBITER_DATA_DIR=data_dir, ARBITER_LOG_LEVEL="WARNING")
    proc = subprocess.run(
        [PYTHON, __file__, "--_django", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH-JSON "):
            return json.loads(line[len("BENCH-JSON "):])
    raise RuntimeError(f"django subprocess {args[0]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")


# ---------------------------------------------------------------------------------------------
# Databases and the server.
# ---------------------------------------------------------------------------------------------


def pg_recreate() -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [PG_DB_NAME],
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_DB_NAME}"')
        conn.execute(f'CREATE DATABASE "{PG_DB_NAME}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{PG_DB_NAME}"


def migrate(db_url: str, data_dir: str) -> None:
    from config.secret_key import key_file_create, key_file_path

    # The bench's data folder is a fresh installation: it gets its own key file, as `make run` makes.
    key_file_create(key_file_path(Path(data_dir)))
    env = dict(os.environ, DATABASE_URL=db_url, ARBITER_DATA_DIR=data_dir)
    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    config: str

    def pids(self) -> list[int]:
        """The uvicorn master and its worker processes."""
        return [self.proc.pid, *children(self.proc.pid)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(db_url: str, data_dir: str, workers: int, fast: bool, token: str, campaign_id: int,
                 hot_path: bool = True, plain_uvicorn: bool = False) -> Server:
    port = free_port()
    # Arbiter's launcher (config/serve.py: a listening socket per worker) or uvicorn's own workers.
    launcher = ["uvicorn", "config.asgi:application"] if plain_uvicorn else ["config.serve"]
    cmd = [PYTHON, "-m", *launcher, "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers), "--no-access-log", "--log-level", "warning"]
    if fast:
        cmd += ["--loop", "uvloop", "--http", "httptools"]
    env = dict(os.environ, DATABASE_URL=db_url, ARBITER_DATA_DIR=data_dir, ARBITER_HOT_PATH="1" if hot_path else "0")
    log = open(Path(data_dir) / f"server-{port}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    config = " ".join(cmd[2:]) + ("" if hot_path else " (ARBITER_HOT_PATH=0)")
    server = Server(proc, port, config)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {(Path(data_dir) / f'server-{port}.log').read_text()[-3000:]}")
        try:
            status, _ = asyncio.run(_one_request(port, "GET", f"/api/v1/campaigns/{campaign_id}/", token))
            if status == 200 and len(children(proc.pid)) >= (workers if workers > 1 else 0):
                # every worker serves: hit it a few more times so each one has loaded the app
                for _ in range(4 * workers):
                    asyncio.run(_one_request(port, "GET", f"/api/v1/campaigns/{campaign_id}/", token))
                return server
        except OSError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError("server did not become ready in 60 s")


# ---------------------------------------------------------------------------------------------
# CPU accounting from /proc (Linux).
# ---------------------------------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[str, int, float] | None:
    """(comm, ppid, cpu seconds) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    rest = raw[raw.rindex(")") + 2 :].split()
    return comm, int(rest[1]), (int(rest[11]) + int(rest[12])) / TICK


def children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            s = _stat(int(p.name))
            if s and s[1] == pid:
                out.append(int(p.name))
    return out


def _busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    f = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in f[:8])
    return (user + nice + system + irq + softirq + steal) / TICK


def _postgres_seconds() -> float:
    """CPU seconds of the PostgreSQL server: live processes plus reaped backends.

    Backends live one request each (CONN_MAX_AGE=0); when one exits its CPU moves into the
    postmaster's cutime/cstime, so the sum below is continuous across backend exits. It counts
    every database on the server, the benchmark's and anybody else's.
    """
    total = 0.0
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            raw = (p / "stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        if not comm.startswith("postgres"):
            continue
        rest = raw[raw.rindex(")") + 2 :].split()
        total += (int(rest[11]) + int(rest[12])) / TICK
        if _stat(int(rest[1])) is None or not _stat(int(rest[1]))[0].startswith("postgres"):  # the postmaster
            total += (int(rest[13]) + int(rest[14])) / TICK
    return total


def cpu_snapshot(server_pids: list[int]) -> dict[str, float]:
    """CPU seconds so far: client (this process), server (uvicorn master + workers), PostgreSQL,
    and the whole machine; "other" (= total - the three) is load that is not the benchmark's."""
    client = os.times()
    snap = {"client": client.user + client.system, "server": 0.0, "postgres": _postgres_seconds(),
            "total": _busy_seconds()}
    for i, pid in enumerate(server_pids):
        s = _stat(pid)
        if s:
            snap["server"] += s[2]
            if i:  # the workers one by one (index 0 is the master), to see how evenly they share
                snap[f"worker{i}"] = s[2]
    return snap


def connections_of(pid: int, port: int) -> int:
    """Established connections to `port` held by process `pid` (from /proc; Linux); 0 if it is gone."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[1].endswith(f":{port:04X}") and f[3] == "01":  # local port is the server's; ESTABLISHED
                inodes.add(f[9])
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return 0
    n = 0
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        n += target.startswith("socket:[") and target[8:-1] in inodes
    return n


def connections_per_worker(server: Server) -> list[int]:
    """Established client connections each uvicorn worker holds."""
    return [connections_of(pid, server.port) for pid in children(server.proc.pid)]


# ---------------------------------------------------------------------------------------------
# The load generator: a minimal asyncio HTTP/1.1 keep-alive client.
# ---------------------------------------------------------------------------------------------


class HttpConn:
    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.token = token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reconnects = -1

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reconnects += 1

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            await self._connect()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nAuthorization: Token {self.token}\r\n"
            f"Content-Type: application/json\r\nAccept: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        try:
            self.writer.write(head + body)
            return await self._read_response()
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            self.close()
            raise

    async def _read_response(self) -> tuple[int, bytes]:
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                parts.append(chunk[:-2])
            body = b"".join(parts)
        else:
            body = await self.reader.read()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _one_request(port: int, method: str, path: str, token: str) -> tuple[int, bytes]:
    conn = HttpConn(port, token)
    try:
        return await asyncio.wait_for(conn.request(method, path), 10)
    finally:
        conn.close()


@dataclass
class LevelResult:
    next_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    judgments_in_window: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    judgment_ids: list[int] = field(default_factory=list)
    assignment_ids: list[int] = field(default_factory=list)
    exhausted: int = 0
    window_s: float = 0.0
    reconnects: int = 0


async def run_level(port: int, campaign_id: int, tokens: list[str], warmup: float, duration: float,
                    max_judgments: int, on_window_start, on_window_end) -> LevelResult:
    res = LevelResult()
    stop = asyncio.Event()
    t_start = time.perf_counter()
    w0, w1 = t_start + warmup, t_start + warmup + duration
    in_window = 0
    rng = random.Random(7)
    timeout = 60.0

    def err(kind: str) -> None:
        res.errors[kind] = res.errors.get(kind, 0) + 1

    async def annotator(token: str) -> None:
        nonlocal in_window
        conn = HttpConn(port, token)
        try:
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    status, body = await asyncio.wait_for(conn.request("POST", f"/api/v1/campaigns/{campaign_id}/next/"), timeout)
                except Exception as exc:  # noqa: BLE001
                    conn.close()
                    err(f"next {type(exc).__name__}")
                    await asyncio.sleep(0.05)
                    continue
                t1 = time.perf_counter()
                if w0 <= t0 and t1 <= w1:
                    res.next_ms.append((t1 - t0) * 1000)
                if status != 200:
                    err(f"next {status}")
                    await asyncio.sleep(0.05)
                    continue
                assignment = json.loads(body)["assignment"]
                if assignment is None:
                    res.exhausted += 1
                    return
                res.assignment_ids.append(assignment["id"])
                shown = [r["id"] for r in assignment["item"]["responses"]]
                if rng.random() < TIE_SHARE:
                    answer = {"outcome": "tie", "time_taken_ms": 1000}
                else:
                    answer = {"outcome": "preferred", "preferred_response_id": shown[0], "strength": 2,
                              "time_taken_ms": 1000}
                payload = json.dumps(answer).encode()
                t0 = time.perf_counter()
                try:
                    status, body = await asyncio.wait_for(
                        conn.request("POST", f"/api/v1/assignments/{assignment['id']}/submit/", payload), timeout
                    )
                except Exception as exc:  # noqa: BLE001
                    conn.close()
                    err(f"submit {type(exc).__name__}")
                    continue
                t1 = time.perf_counter()
                if w0 <= t0 and t1 <= w1:
                    res.submit_ms.append((t1 - t0) * 1000)
                if status == 201:
                    res.judgment_ids.append(json.loads(body)["id"])
                    if w0 <= t1 <= w1:
                        in_window += 1
                        if max_judgments and in_window >= max_judgments:
                            stop.set()
                else:
                    err(f"submit {status}")
        finally:
            res.reconnects += max(conn.reconnects, 0)
            conn.close()

    async def clock() -> None:
        await asyncio.sleep(max(0.0, w0 - time.perf_counter()))
        on_window_start()
        while time.perf_counter() < w1 and not stop.is_set():
            await asyncio.sleep(0.02)
        on_window_end()
        stop.set()

    tasks = [asyncio.create_task(annotator(t)) for t in tokens]
    clock_task = asyncio.create_task(clock())
    await asyncio.gather(*tasks)
    if not clock_task.done():  # everyone stopped early (campaign exhausted)
        on_window_end()
        clock_task.cancel()
    res.window_s = min(time.perf_counter(), w1) - w0
    res.judgments_in_window = in_window
    return res


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))]


# ---------------------------------------------------------------------------------------------
# Orchestration.
# ---------------------------------------------------------------------------------------------


def bench_one(db: str, n_items: int, levels: list[int], args, tmp_root: Path) -> list[dict]:
    data_dir = tmp_root / f"{db}-{n_items}"
    data_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if db == "postgres":
        db_url = pg_recreate()
    else:
        db_url = f"sqlite:///{data_dir / 'bench.sqlite3'}"
    migrate(db_url, str(data_dir))
    migrate_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    seed = django_call(db_url, str(data_dir), "seed", str(n_items), str(sum(levels) + sum(args.django_levels)))
    seed_s = time.perf_counter() - t0
    print(f"[{db} {n_items:,}] migrate {migrate_s:.1f}s, seed {seed_s:.1f}s {seed['timings']}, "
          f"seed check {'OK' if seed['seed_check']['ok'] else seed['seed_check']['problems']}, "
          f"campaign counters as items_import keeps them: {seed['seed_check']['campaign_counters_applied']}",
          flush=True)
    tokens = seed["tokens"]
    cid = seed["campaign_id"]
    rows = []
    offset = 0
    for hot, path_levels in ((True, levels), (False, args.django_levels)):
        if not path_levels:
            continue
        server = start_server(db_url, str(data_dir), args.workers, args.fast, tokens[0], cid, hot_path=hot,
                              plain_uvicorn=args.plain_uvicorn)
        print(f"[{db} {n_items:,}] server: {server.config}", flush=True)
        try:
            for n in path_levels:
                rows.append(run_one_level(db, n_items, n, tokens[offset : offset + n], server, db_url, data_dir,
                                          cid, args, path="hot path" if hot else "Django only"))
                offset += n
        finally:
            server.stop()
    return rows


def run_one_level(db: str, n_items: int, n: int, level_tokens: list[str], server: Server, db_url: str,
                  data_dir: Path, cid: int, args, path: str) -> dict:
    snaps = {}
    spies: list[subprocess.Popen] = []

    def window_start() -> None:
        snaps["a"] = (time.perf_counter(), cpu_snapshot(server.pids()))
        if args.py_spy:
            spies.extend(start_py_spy(server, Path(args.py_spy), f"{db}-{n_items}-{n}", args.duration))

    def window_end() -> None:
        snaps["b"] = (time.perf_counter(), cpu_snapshot(server.pids()))
        snaps["conns"] = connections_per_worker(server)

    res = asyncio.run(run_level(
        server.port, cid, level_tokens, args.warmup, args.duration, args.max_judgments, window_start, window_end
    ))
    for spy in spies:
        spy.wait()
    seen = data_dir / f"seen-{n}-{len(level_tokens)}-{path.split()[0]}.json"
    seen.write_text(json.dumps({"judgments": res.judgment_ids, "assignments": res.assignment_ids}))
    check = django_call(db_url, str(data_dir), "check", str(cid), str(seen))
    cpu = {}
    if "a" in snaps and "b" in snaps:
        wall = snaps["b"][0] - snaps["a"][0]
        cap = wall * (os.cpu_count() or 1)
        cpu = {k: round(100 * (snaps["b"][1][k] - snaps["a"][1][k]) / cap, 1) for k in snaps["a"][1]
               if k in snaps["b"][1]}
        cpu["other"] = round(cpu["total"] - cpu["client"] - cpu["server"] - cpu["postgres"], 1)
    jps = res.judgments_in_window / res.window_s if res.window_s > 0 else float("nan")
    k, peer = peer_figure(n)
    row = {
        "db": db, "items": n_items, "annotators": n, "path": path, "judgments_per_s": round(jps, 1),
        "judgments": res.judgments_in_window, "window_s": round(res.window_s, 2),
        "next_p50": pct(res.next_ms, 50), "next_p95": pct(res.next_ms, 95), "next_p99": pct(res.next_ms, 99),
        "submit_p50": pct(res.submit_ms, 50), "submit_p95": pct(res.submit_ms, 95),
        "submit_p99": pct(res.submit_ms, 99), "n_next": len(res.next_ms), "n_submit": len(res.submit_ms),
        "errors": res.errors, "exhausted": res.exhausted, "reconnects": res.reconnects,
        "check": check, "cpu_pct": cpu, "connections_per_worker": snaps.get("conns"), "peer_annotators": k, "peer_jps": peer,
        "vs_peer": round(jps / peer, 1), "server": server.config,
    }
    print(f"[{db} {n_items:,}] {n:>3} annotators ({path}): {jps:7.1f} judgments/s  "
          f"next p50/p95/p99 {row['next_p50']:.1f}/{row['next_p95']:.1f}/{row['next_p99']:.1f} ms  "
          f"submit {row['submit_p50']:.1f}/{row['submit_p95']:.1f}/{row['submit_p99']:.1f} ms  "
          f"errors {sum(res.errors.values())} {res.errors or ''}  violations {check['violations']}  "
          f"cpu {cpu}  connections per worker {snaps.get('conns')}", flush=True)
    return row


def start_py_spy(server: Server, out: Path, name: str, duration: float) -> list[subprocess.Popen]:
    """Sample every uvicorn worker with py-spy for the window (raw collapsed stacks)."""
    out.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    workers = children(server.proc.pid) or [server.proc.pid]
    return [
        subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(int(duration)), "--rate", "200",
                          "--format", "raw", "--output", str(out / f"{name}-w{i}.txt"), "--nonblocking"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for i, pid in enumerate(workers)
    ]


def spy_summary(paths: list[str], top: int = 25) -> str:
    """Inclusive share of samples per application / Django / driver frame, from py-spy raw files."""
    inclusive: dict[str, int] = {}
    total = 0
    for path in paths:
        for line in Path(path).read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            n = int(count)
            total += n
            seen = set()
            for frame in stack.split(";"):
                if frame not in seen:
                    seen.add(frame)
                    inclusive[frame] = inclusive.get(frame, 0) + n
    rows = sorted(inclusive.items(), key=lambda kv: -kv[1])
    keep = [(f, n) for f, n in rows if any(k in f for k in ("annotation/", "config/", "django/", "rest_framework/",
                                                              "psycopg", "sqlite3", "asgiref/"))]
    return "\n".join(f"{100 * n / total:5.1f}%  {f}" for f, n in keep[:top]) + f"\n({total} samples)"


def fmt(v: float) -> str:
    return "–" if v != v else (f"{v:.0f}" if v >= 100 else f"{v:.1f}")


def table(rows: list[dict]) -> str:
    out = [
        "| DB | items | annotators | path | judgments/s | vs Label Studio | next p50 / p95 / p99 ms "
        "| submit p50 / p95 / p99 ms | errors | invariants | CPU % client / server / PG / other |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        errs = sum(r["errors"].values())
        c = r["check"]
        inv = "OK" if c["violations"] == 0 else f"**{c['violations']} violations**"
        cpu = r["cpu_pct"]
        cpu_s = (f"{cpu.get('client', 0):.0f} / {cpu.get('server', 0):.0f} / {cpu.get('postgres', 0):.0f} / "
                 f"{cpu.get('other', 0):.0f} %")
        out.append(
            f"| {'PostgreSQL' if r['db'] == 'postgres' else 'SQLite'} | {r['items']:,} | {r['annotators']} "
            f"| {r.get('path', 'hot path')} | {r['judgments_per_s']:.1f} | {r['vs_peer']:.1f}x (LS {r['peer_jps']} @ {r['peer_annotators']}) "
            f"| {fmt(r['next_p50'])} / {fmt(r['next_p95'])} / {fmt(r['next_p99'])} "
            f"| {fmt(r['submit_p50'])} / {fmt(r['submit_p95'])} / {fmt(r['submit_p99'])} "
            f"| {errs}{' ' + json.dumps(r['errors']) if errs else ''} | {inv} | {cpu_s} |"
        )
    return "\n".join(out)


def growth(rows: list[dict]) -> str:
    rows = [r for r in rows if r.get("path", "hot path") == "hot path"]
    sizes = sorted({r["items"] for r in rows})
    if len(sizes) < 2:
        return ""
    small, large = sizes[0], sizes[-1]
    out = [f"`next` latency at {large:,} items / at {small:,} items (target: within 1.5x):", "",
           "| DB | annotators | p50 ratio | p95 ratio | p99 ratio |", "| --- | ---: | ---: | ---: | ---: |"]
    by = {(r["db"], r["items"], r["annotators"]): r for r in rows}
    for db in ("postgres", "sqlite"):
        for n in sorted({r["annotators"] for r in rows}):
            a, b = by.get((db, small, n)), by.get((db, large, n))
            if a and b:
                out.append(f"| {'PostgreSQL' if db == 'postgres' else 'SQLite'} | {n} | "
                           + " | ".join(f"{b[k] / a[k]:.1f}x" for k in ("next_p50", "next_p95", "next_p99")) + " |")
    return "\n".join(out)


def targets(rows: list[dict]) -> str:
    lines = []
    for r in rows:
        if r["db"] == "postgres" and r["annotators"] == 16 and r.get("path", "hot path") == "hot path":
            lines.append(f"- PostgreSQL {r['items']:,} items, 16 annotators: {r['judgments_per_s']:.1f} judgments/s "
                         f"({'meets' if r['judgments_per_s'] >= 300 else 'misses'} >= 300); next p99 "
                         f"{r['next_p99']:.1f} ms ({'meets' if r['next_p99'] < 50 else 'misses'} < 50 ms)")
    v = sum(r["check"]["violations"] for r in rows)
    lines.append(f"- invariant violations over all runs: {v} ({'meets' if v == 0 else 'misses'} zero)")
    by = {(r["db"], r["items"], r["annotators"], r.get("path", "hot path")): r for r in rows}
    for (db, n_items, n, path), r in by.items():
        base = by.get((db, n_items, n, "Django only"))
        if path == "hot path" and base:
            lines.append(f"- {db} {n_items:,} items, {n} annotators: hot path {r['judgments_per_s']:.1f} / Django only "
                         f"{base['judgments_per_s']:.1f} judgments/s = {r['judgments_per_s'] / base['judgments_per_s']:.1f}x")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_django":
        django_main(sys.argv[2:])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 10k items, 1 and 4 annotators, 3 s windows")
    p.add_argument("--db", choices=["postgres", "sqlite", "both"], default="both")
    p.add_argument("--items", default=None, help="campaign sizes, comma-separated (default 10000,1000000)")
    p.add_argument("--annotators", default=None, help="concurrency levels (default 1,4,16,64)")
    p.add_argument("--duration", type=float, default=None, help="measured seconds per level (default 12)")
    p.add_argument("--warmup", type=float, default=None, help="unmeasured seconds before each window (default 2)")
    p.add_argument("--max-judgments", type=int, default=0, help="stop a level early after this many judgments")
    p.add_argument("--django-levels", default="", metavar="N,...",
                   help="also run these concurrency levels with the hot path off (ARBITER_HOT_PATH=0): the "
                        "same requests through Django and DRF, as a baseline in the same session")
    p.add_argument("--workers", type=int, default=2, help="uvicorn worker processes (default 2)")
    p.add_argument("--plain-uvicorn", action="store_true",
                   help="start `uvicorn --workers N` (one shared socket) instead of `python -m config.serve`")
    p.add_argument("--no-fast", dest="fast", action="store_false",
                   help="do not pass --loop uvloop --http httptools to uvicorn")
    p.add_argument("--json", default=None, help="also write the raw results here")
    p.add_argument("--py-spy", default=None, metavar="DIR",
                   help="sample each uvicorn worker with py-spy during every window; raw stacks go to DIR")
    p.add_argument("--py-spy-summary", nargs="+", default=None, metavar="FILE",
                   help="print the hottest frames of py-spy raw files and exit")
    p.add_argument("--keep", action="store_true", help="keep the temp folder (SQLite files, server logs)")
    args = p.parse_args()
    if args.py_spy_summary:
        print(spy_summary(args.py_spy_summary))
        return
    quick = args.quick
    items = [int(x) for x in (args.items or ("10000" if quick else "10000,1000000")).split(",")]
    levels = [int(x) for x in (args.annotators or ("1,4" if quick else "1,4,16,64")).split(",")]
    args.django_levels = [int(x) for x in args.django_levels.split(",") if x.strip()]
    args.duration = args.duration if args.duration is not None else (3.0 if quick else 12.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if quick else 2.0)
    args.fast = args.fast and have("uvloop") and have("httptools")
    dbs = ["postgres", "sqlite"] if args.db == "both" else [args.db]
    if have("uvloop"):
        import uvloop

        uvloop.install()  # the client's loop too: less of the shared CPU for the load generator
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}; items {items}, annotators {levels}, "
          f"window {args.warmup:g}+{args.duration:g} s; client loop {'uvloop' if have('uvloop') else 'asyncio'}",
          flush=True)
    tmp_root = Path(tempfile.mkdtemp(prefix="arbiter-bench-"))
    rows: list[dict] = []
    try:
        for db in dbs:
            for n in items:
                rows.extend(bench_one(db, n, levels, args, tmp_root))
    finally:
        if not args.keep:
            shutil.rmtree(tmp_root, ignore_errors=True)
        else:
            print(f"kept {tmp_root}")
    print()
    print(table(rows))
    print()
    g = growth(rows)
    if g:
        print(g)
        print()
    print(targets(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))
    sys.exit(1 if any(r["check"]["violations"] for r in rows) else 0)


if __name__ == "__main__":
    main()
