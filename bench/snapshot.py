"""Snapshot consensus at scale: Arbiter's Dawid–Skene and reliability-weighted vs crowd-kit's DawidSkene.

    python bench/snapshot.py                          # 1,000,000 judgments (200,000 items x 5)
    python bench/snapshot.py --judgments 100000 --json /tmp/snap.json

Generates pairwise judgments with a known truth (A 45 %, B 45 %, tie 10 %) from a pool of
annotators with uneven workloads (log-normal): 60 % reliable (right with probability
U(0.8, 0.95), else one of the two wrong answers), 25 % noisy (U(0.5, 0.7)), 10 % spammers
(uniform over A / B / tie) and 5 % who always click the response shown first (A or B by a coin,
never tie). Each item is judged by `--overlap` different annotators; judgments are shuffled, as
they arrive over time. No gold items (crowd-kit's DawidSkene is run without true labels too).

Each run is a fresh subprocess that loads the same judgments (a .npz) and records wall time of
the consensus alone and the process's peak RSS (`resource.getrusage(...).ru_maxrss`), beside
its RSS after imports and loading (the baseline), so `peak - baseline` is what the method
itself held. Runs, back to back on one machine:

- `arbiter DS (arrays)` / `arbiter RW (arrays)`: `dawid_skene` / `reliability_weighted` on
  `EncodedJudgments` built straight from integer arrays (the pure math, crowd-kit's equivalent).
- `arbiter DS (snapshot)` / `arbiter RW (snapshot)`: as the dataset build calls them: one
  `PairwiseJudgment` per judgment, then `annotation.core.snapshot.snapshot_consensus` with the
  dataset defaults (max_iter 100, use_gold on, both_bad "tie"); the time to make the objects is
  reported apart (`objects s`).
- `crowd-kit DawidSkene`: `DawidSkene(n_iter=100, tol=1e-5).fit_predict` on the (task, worker,
  label) DataFrame built from the same arrays (building it counted in its time).

Then prints one markdown table: time, peak and baseline RSS, iterations, accuracy against the
truth, and per-item agreement with crowd-kit.

    python bench/snapshot.py --build 100000      # the whole dataset build, on PostgreSQL

`--build N` measures the path a user waits on instead: it seeds N judgments (overlap 3) into a
fresh PostgreSQL database (`arbiter_snapshot_bench`, or BENCH_SNAPSHOT_PG_DB; seeded as
`bench/export.py` seeds) and, per method, in a fresh subprocess, creates a dataset and runs
`annotation.services.datasets.dataset_build` (read the judgments, consensus, statistics,
leaderboard, write the comparisons), recording its wall time and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable

RUNS = ("crowd-kit DawidSkene", "arbiter DS (arrays)", "arbiter RW (arrays)", "arbiter DS (snapshot)",
        "arbiter RW (snapshot)")
TRUTH_P = (0.45, 0.45, 0.10)


def generate(n_judgments: int, overlap: int, n_annotators: int, seed: int) -> dict[str, np.ndarray]:
    """Return judgments (item, annotator, label in 0 A / 1 B / 2 tie), the truth, and each annotator's kind."""
    rng = np.random.default_rng(seed)
    n_items = n_judgments // overlap
    truth = rng.choice(3, size=n_items, p=TRUTH_P)
    kind = rng.choice(4, size=n_annotators, p=(0.60, 0.25, 0.10, 0.05))  # reliable, noisy, spammer, clicker
    accuracy = np.where(kind == 0, rng.uniform(0.8, 0.95, n_annotators), rng.uniform(0.5, 0.7, n_annotators))
    workload = rng.lognormal(0.0, 0.8, n_annotators)
    workload /= workload.sum()
    who = rng.choice(n_annotators, size=(n_items, overlap), p=workload)
    while True:  # each item's annotators are different people
        s = np.sort(who, axis=1)
        dup = (s[:, 1:] == s[:, :-1]).any(axis=1)
        if not dup.any():
            break
        who[dup] = rng.choice(n_annotators, size=(int(dup.sum()), overlap), p=workload)
    item = np.repeat(np.arange(n_items), overlap)
    annotator = who.ravel()
    t = truth[item]
    k = kind[annotator]
    right = rng.random(len(item)) < accuracy[annotator]
    wrong = (t + rng.integers(1, 3, len(item))) % 3
    label = np.where(right, t, wrong)
    label = np.where(k == 2, rng.integers(0, 3, len(item)), label)
    label = np.where(k == 3, rng.integers(0, 2, len(item)), label)
    order = rng.permutation(len(item))
    return {"item": item[order], "annotator": annotator[order], "label": label[order], "truth": truth,
            "kind": kind}


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(name: str, data_path: str, out_path: str) -> None:
    """Run one method on the stored judgments; write its decided class per item and its measures."""
    if name.startswith("crowd-kit"):
        import pandas as pd
        from crowdkit.aggregation import DawidSkene
    else:
        from annotation.core.aggregation import (
            Outcome,
            PairwiseJudgment,
            dawid_skene,
            reliability_weighted,
        )
        from annotation.core.aggregation.types import CLASS_OUTCOMES, EncodedJudgments
        from annotation.core.snapshot import snapshot_consensus
    data = dict(np.load(data_path))
    item, annotator, label = data["item"], data["annotator"], data["label"]
    n_items = len(data["truth"])
    baseline = _rss_mb()
    result: dict = {"run": name}
    t0 = time.perf_counter()
    if name.startswith("crowd-kit"):
        df = pd.DataFrame({"task": item, "worker": annotator, "label": label})
        model = DawidSkene(n_iter=100, tol=1e-5)
        predicted = model.fit_predict(df)
        result["iterations"] = len(model.loss_history_)
        decided = predicted.reindex(np.arange(n_items)).to_numpy().astype(np.int64)
        result["consensus_s"] = time.perf_counter() - t0
    else:
        outcome_class = {o: c for c, o in enumerate(CLASS_OUTCOMES)}
        if name.endswith("(arrays)"):
            first_seen = np.full(n_items, -1)
            enc = EncodedJudgments(
                item_ids=list(range(n_items)), annotator_ids=list(range(int(annotator.max()) + 1)),
                pairs=[(2 * i, 2 * i + 1) for i in range(n_items)], item=item.astype(np.intp),
                annotator=annotator.astype(np.intp), label=label.astype(np.intp), gold=first_seen,
            )
            result["objects_s"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            res = (dawid_skene(enc, use_gold=False) if " DS " in name
                   else reliability_weighted(enc, use_gold=False))
        else:
            outcomes = (Outcome.A, Outcome.B, Outcome.TIE)
            pairs = [PairwiseJudgment(item_id=i, annotator_id=a, response_a_id=2 * i, response_b_id=2 * i + 1,
                                      outcome=outcomes[c])
                     for i, a, c in zip(item.tolist(), annotator.tolist(), label.tolist(), strict=True)]
            result["objects_s"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            params = {"max_iter": 100, "use_gold": True, "both_bad": "tie", "prior_accuracy": 0.6,
                      "prior_strength": 4.0}
            res = snapshot_consensus(pairs, method="dawid_skene" if " DS " in name else "reliability_weighted",
                                     params=params)
        result["consensus_s"] = time.perf_counter() - t1
        result["iterations"] = res.iterations
        decided = np.full(n_items, -1, dtype=np.int64)
        for c in res.items:
            decided[c.item_id] = outcome_class[c.outcome]
    result["wall_s"] = time.perf_counter() - t0
    result["baseline_mb"] = baseline
    result["peak_mb"] = _peak_mb()
    np.save(out_path, decided)
    print(json.dumps(result))


def build_child(method: str, campaign_id: str) -> None:
    """Create a dataset of the seeded campaign by `method` and build it; print its measures."""
    from bench.serve import _django_setup

    _django_setup()
    from django.db import transaction

    from annotation.models import Campaign, Membership, Role
    from annotation.services.datasets import dataset_build, dataset_create

    campaign = Campaign.objects.get(pk=int(campaign_id))
    manager = Membership.objects.filter(campaign=campaign, role=Role.MANAGER).select_related("user").first().user
    with transaction.atomic():
        dataset = dataset_create(campaign=campaign, method=method, created_by=manager)
    baseline = _rss_mb()
    t = time.perf_counter()
    dataset = dataset_build(dataset_id=dataset.pk)
    wall = time.perf_counter() - t
    print("BENCH-JSON " + json.dumps({
        "method": method, "status": dataset.status, "error": dataset.error, "wall_s": wall,
        "comparisons": dataset.comparison_count, "judgments": dataset.judgment_count,
        "baseline_mb": baseline, "peak_mb": _peak_mb(),
    }))


def build_main(n: int, annotators: int, json_path: str | None) -> None:
    os.environ.setdefault("BENCH_EXPORT_PG_DB", os.environ.get("BENCH_SNAPSHOT_PG_DB", "arbiter_snapshot_bench"))
    from bench import export
    from bench.serve import migrate

    machine = f"{platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine}, PostgreSQL database {export.PG_DB_NAME}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="arbiter-snapshot-build-") as tmp:
        data_dir = str(Path(tmp) / "data")
        os.makedirs(data_dir)
        db_url = export.pg_recreate()
        try:
            migrate(db_url, data_dir)
            t = time.perf_counter()
            seed = export.django_call(db_url, data_dir, "seed", str(n), str(annotators))
            print(f"seeded {n:,} judgments in {time.perf_counter() - t:.1f} s", flush=True)
            env = dict(os.environ, DATABASE_URL=db_url, ARBITER_DATA_DIR=data_dir, ARBITER_LOG_LEVEL="WARNING")
            for method in ("reliability_weighted", "dawid_skene"):
                proc = subprocess.run([PYTHON, __file__, "--_build", method, str(seed["campaign_id"])], cwd=ROOT,
                                      env=env, capture_output=True, text=True)
                line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCH-JSON ")), None)
                if line is None:
                    raise SystemExit(f"build {method} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
                row = json.loads(line[len("BENCH-JSON "):])
                rows.append(row)
                print(f"  {method}: {row['status']} in {row['wall_s']:.1f} s, {row['comparisons']:,} comparisons "
                      f"from {row['judgments']:,} judgments, peak {row['peak_mb']:.0f} MB "
                      f"(baseline {row['baseline_mb']:.0f} MB) {row['error'] or ''}", flush=True)
        finally:
            export.pg_drop()
    print()
    print(f"dataset_build, {n:,} judgments (overlap 3), PostgreSQL; {machine}")
    print()
    print("| method | status | build s | comparisons | peak RSS MB | baseline MB | peak - baseline MB |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['method']} | {r['status']} | {r['wall_s']:.1f} | {r['comparisons']:,} | {r['peak_mb']:.0f} | "
              f"{r['baseline_mb']:.0f} | {r['peak_mb'] - r['baseline_mb']:.0f} |")
    if json_path:
        Path(json_path).write_text(json.dumps({"machine": machine, "judgments": n, "builds": rows}, indent=2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--judgments", type=int, default=1_000_000)
    p.add_argument("--overlap", type=int, default=5)
    p.add_argument("--annotators", type=int, default=400, help="annotator pool size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", default=",".join(RUNS), help="comma-separated subset of: " + ", ".join(RUNS))
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--build", type=int, default=0, metavar="N",
                   help="measure dataset_build on N seeded judgments in PostgreSQL instead")
    args = p.parse_args()
    if args.build:
        build_main(args.build, args.annotators, args.json)
        return
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    unknown = set(runs) - set(RUNS)
    if unknown:
        raise SystemExit(f"--runs: unknown {sorted(unknown)}; choose from {list(RUNS)}")
    machine = f"{platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}"
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine}", flush=True)
    with tempfile.TemporaryDirectory(prefix="arbiter-snapshot-bench-") as tmp:
        t = time.perf_counter()
        data = generate(args.judgments, args.overlap, args.annotators, args.seed)
        data_path = str(Path(tmp) / "judgments.npz")
        np.savez(data_path, **data)
        n_items = len(data["truth"])
        print(f"generated {len(data['item']):,} judgments on {n_items:,} items by {args.annotators} annotators "
              f"in {time.perf_counter() - t:.1f} s", flush=True)
        rows, decided = [], {}
        for name in runs:
            out = str(Path(tmp) / f"{len(rows)}.npy")
            proc = subprocess.run([PYTHON, __file__, "--_run", name, data_path, out], cwd=ROOT,
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            decided[name] = np.load(out)
            row["accuracy"] = float((decided[name] == data["truth"]).mean())
            rows.append(row)
            print(f"  {name}: {row['consensus_s']:.2f} s, peak {row['peak_mb']:.0f} MB "
                  f"(baseline {row['baseline_mb']:.0f} MB), {row['iterations']} iterations, "
                  f"accuracy {row['accuracy']:.4f}", flush=True)
    ck = decided.get("crowd-kit DawidSkene")
    for row in rows:
        row["agreement_with_crowdkit"] = None if ck is None else float((decided[row["run"]] == ck).mean())
    print()
    print(f"{len(data['item']):,} judgments, {n_items:,} items, overlap {args.overlap}, "
          f"{args.annotators} annotators; {machine}")
    print()
    print("| run | objects s | consensus s | peak RSS MB | baseline MB | peak - baseline MB | iterations | "
          "accuracy | same answer as crowd-kit |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        agree = "" if r["agreement_with_crowdkit"] is None else f"{100 * r['agreement_with_crowdkit']:.2f} %"
        objects = f"{r['objects_s']:.2f}" if "objects_s" in r else ""
        print(f"| {r['run']} | {objects} | {r['consensus_s']:.2f} | {r['peak_mb']:.0f} | {r['baseline_mb']:.0f} | "
              f"{r['peak_mb'] - r['baseline_mb']:.0f} | {r['iterations']} | {100 * r['accuracy']:.2f} % | {agree} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "judgments": len(data["item"]), "items": n_items,
                                               "overlap": args.overlap, "annotators": args.annotators,
                                               "seed": args.seed, "runs": rows}, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_run":
        child(*sys.argv[2:5])
    elif len(sys.argv) > 1 and sys.argv[1] == "--_build":
        build_child(*sys.argv[2:4])
    else:
        main()
