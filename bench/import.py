"""Import through the API: 5,000 pairwise items into a fresh campaign, this tree against another.

    python bench/import.py [--items 5000] [--repeats 5] [--backends sqlite,postgres]
                           [--baseline-root /tmp/import-base] [--profile] [--json FILE]

The file: the 1,500 Anthropic HH rows of `../shared/data/hh-harmless-1500.jsonl` (or
$ARBITER_SHARED_DATA/...) as they are, then synthetic HH transcripts up to `--items`, each a
one- to three-turn conversation and two replies whose lengths are drawn from the real rows'
and whose words are drawn from their vocabulary (seeded), so every item is distinct and the
text is as long as real data. Nothing of the HH file is written into the project.

Each (tree, backend) runs in its own child process with that tree as its working directory and
first on sys.path, so the same script measures the current code and a baseline checkout (e.g.
`git worktree add /tmp/import-base 758c873`) back to back. The child migrates a fresh database
(SQLite in a temporary folder; PostgreSQL database `arbiter_import_bench`, dropped and
recreated), creates a manager and, per repeat, a fresh draft campaign, then times
`POST /api/v1/campaigns/<id>/import/` through DRF's APIClient (multipart upload of the whole
file; authentication, parsing, validation, hygiene checks and the inserts, committed), and
checks the answer is 201 with every item stored. The first run warms imports and caches and
is not counted; the table gives the median, min and max of the others, and the CPU time the
web process spent (user + system; it leaves out PostgreSQL's own work), which a machine shared
with other jobs disturbs less than the wall clock.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HH_FILE = Path(os.environ.get("ARBITER_SHARED_DATA", ROOT.parent / "shared" / "data")) / "hh-harmless-1500.jsonl"
if not HH_FILE.exists():
    HH_FILE = Path("/work/shared/data/hh-harmless-1500.jsonl")
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
PG_DB_NAME = os.environ.get("BENCH_IMPORT_PG_DB", "arbiter_import_bench")


def build_file(n_items: int, seed: int = 19) -> bytes:
    """Return the JSONL bytes: the HH rows, then synthetic HH rows of the same shape up to n_items."""
    rows = [line for line in HH_FILE.read_bytes().splitlines() if line.strip()]
    parsed = [json.loads(r) for r in rows]
    out = rows[:n_items]
    rng = random.Random(seed)
    vocab = sorted({w for p in parsed for w in p["chosen"].split() if w not in ("Human:", "Assistant:")})
    lengths = [len(p["chosen"].split()) for p in parsed]

    def words(n: int) -> str:
        return " ".join(rng.choice(vocab) for _ in range(max(n, 3)))

    while len(out) < n_items:
        total = rng.choice(lengths)
        turns = rng.choice((1, 1, 2, 3))
        head = ""
        for t in range(turns):
            head += f"\n\nHuman: {words(total // (2 * turns + 1))}"
            if t < turns - 1:
                head += f"\n\nAssistant: {words(total // (2 * turns + 1))}"
        reply = total // (2 * turns + 1) + 5
        chosen = f"{head}\n\nAssistant: {words(reply)}"
        rejected = f"{head}\n\nAssistant: {words(rng.randint(reply // 2 + 1, reply * 2))}"
        out.append(json.dumps({"chosen": chosen, "rejected": rejected}).encode())
    return b"\n".join(out) + b"\n"


# --- child: one tree, one backend --------------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    sys.path.insert(0, os.getcwd())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.db import connection
    from rest_framework.test import APIClient

    from annotation.models import Campaign, Item, Role
    from annotation.services.campaigns import campaign_create

    call_command("migrate", verbosity=0)
    body = Path(args.file).read_bytes()
    manager = get_user_model().objects.create_user("bench-import-manager", password=None)
    manager.groups.add(Group.objects.get_or_create(name=Role.MANAGER)[0])
    client = APIClient()
    client.force_authenticate(manager)

    import resource

    def cpu() -> float:
        u = resource.getrusage(resource.RUSAGE_SELF)
        return u.ru_utime + u.ru_stime

    cpu_times: list[float] = []

    def one() -> float:
        import io

        campaign = campaign_create(created_by=manager, name="import bench", kind=Campaign.Kind.PAIRWISE)
        upload = io.BytesIO(body)
        upload.name = "bench.jsonl"
        start, start_cpu = time.perf_counter(), cpu()
        res = client.post(f"/api/v1/campaigns/{campaign.pk}/import/", {"file": upload}, format="multipart")
        took = time.perf_counter() - start
        cpu_times.append(cpu() - start_cpu)
        assert res.status_code == 201, (res.status_code, res.content[:2000])
        stored = Item.objects.filter(campaign=campaign).count()
        assert stored == args.items, stored
        return took

    if args.warmup:
        one()  # warm-up, not counted
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile(time.process_time)  # CPU time: a shared machine inflates wall time
        prof.enable()
        one()
        prof.disable()
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(40)
    cpu_times.clear()
    times = [one() for _ in range(args.repeats)]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"times": times, "cpu": cpu_times, "vendor": connection.vendor, "peak_rss_mb": peak_mb}))


def run_child(root: Path, backend: str, args: argparse.Namespace, file: Path, tmp: Path) -> dict:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="config.settings", PYTHONPATH=str(root),
               ARBITER_DATA_DIR=str(tmp / f"data-{root.name}-{backend}"), ARBITER_DEBUG="0", ARBITER_ALLOWED_HOSTS="testserver")
    if backend == "postgres":
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{PG_DB_NAME}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{PG_DB_NAME}"')
        env["DATABASE_URL"] = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + PG_DB_NAME
    else:
        env.pop("DATABASE_URL", None)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--file", str(file),
           "--items", str(args.items), "--repeats", str(args.repeats), "--warmup", str(args.warmup)]
    if args.profile and root == ROOT:
        cmd.append("--profile")
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{root} {backend} failed:\n{proc.stderr[-4000:]}")
    if args.profile and root == ROOT:
        print(proc.stderr[-12000:], file=sys.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--baseline-root", default="", help="another checkout to measure the same way")
    parser.add_argument("--profile", action="store_true", help="cProfile one import of this tree")
    parser.add_argument("--warmup", type=int, default=1, help="0: no uncounted first run (large --items)")
    parser.add_argument("--json", default="")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--file", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    trees = [("current", ROOT)]
    if args.baseline_root:
        trees.insert(0, ("baseline", Path(args.baseline_root).resolve()))
    results = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        file = tmp / "bench.jsonl"
        file.write_bytes(build_file(args.items))
        size_mb = file.stat().st_size / 1e6
        for backend in args.backends.split(","):
            for label, root in trees:
                out = run_child(root, backend, args, file, tmp)
                med = statistics.median(out["times"])
                cpu_med = statistics.median(out["cpu"])
                results.append({"tree": label, "root": str(root), "backend": backend, "times": out["times"],
                                "cpu": out["cpu"], "median_s": med, "cpu_median_s": cpu_med,
                                "peak_rss_mb": out["peak_rss_mb"],
                                "lines_per_s": args.items / med})
                print(f"{label:8} {backend:8} median {med:.3f} s  min {min(out['times']):.3f}  "
                      f"max {max(out['times']):.3f}  cpu {cpu_med:.3f} s  {args.items / med:,.0f} lines/s  "
                      f"peak RSS {out['peak_rss_mb']:.0f} MB", flush=True)
    print(f"\n{args.items} items, {size_mb:.1f} MB, {args.repeats} timed runs each after a warm-up; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    print("| tree | backend | median s | min–max s | web process CPU s | lines/s |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['tree']} | {r['backend']} | {r['median_s']:.3f} | {min(r['times']):.3f}–{max(r['times']):.3f} "
              f"| {r['cpu_median_s']:.3f} | {r['lines_per_s']:,.0f} |")
    by = {(r["tree"], r["backend"]): r["median_s"] for r in results}
    for backend in args.backends.split(","):
        if ("baseline", backend) in by:
            print(f"\n{backend}: baseline / current = {by[('baseline', backend)] / by[('current', backend)]:.1f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"items": args.items, "mb": size_mb, "results": results}, indent=2))


if __name__ == "__main__":
    main()
