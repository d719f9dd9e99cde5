"""The closed loop, measured: generate → judge over HTTP → aggregate → reward model → PPO → again.

    python bench/loop.py [--rounds 2] [--prompts 48] [--k 4] [--ppo-steps 30] [--out bench/loop]

Everything runs on the CPU with tiny models built locally (`training.tiny`), in one process
with a fresh SQLite database, and goes through Arbiter's own code paths:

0. **Set-up.** Build a tiny causal LM and reward-model base; warm the LM up on the tiny corpus
   (a few hundred supervised steps) so it writes sentences — a quarter polite, a quarter blunt.
   Start the real ASGI server (uvicorn, `config.asgi:application`) on a free loopback port.
1. **Generate** K responses per prompt from the current policy
   (`training.generation.generate_responses`) and open the round's campaign with
   `training.rounds.services.round_create` (random pairs in round 1, the pairs the reward
   model is least sure about afterwards).
2. **Judge.** Simulated annotators sign in with API tokens and loop `next` → `submit` over
   HTTP. They follow a hidden preference — politeness: polite openers ("Please", "Thank
   you", ...) count +1, blunt ones ("Whatever", "No", ...) −1 — and answer at random 20% of the
   time (the noise).
3. **Aggregate** the round's judgments into a reliability-weighted dataset snapshot.
4. **Reward model** trained on every snapshot so far (`training.reward.train_reward_model`);
   reported: its held-out accuracy, and its agreement with the hidden preference on fresh pairs.
5. **PPO** (`training.ppo.trainer.train_ppo`) from the current policy against that reward model; KL to
   the reference reported.
6. **Score** the new policy with the hidden preference on held-out prompts (mean per response),
   then start the next round from it.

It prints a markdown table, writes `<out>.json` and an SVG plot `<out>.svg` (hidden
preference score of the policy, RM accuracy and KL per round).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

POLITE = ("please", "thank you", "kindly", "with pleasure", "certainly")
BLUNT = ("whatever", "figure it out", "not my problem", "stop asking", "no.")
NOISE = 0.2
ANNOTATORS = 3


# ---------------------------------------------------------------------------------------------
# The hidden preference and the simulated annotators
# ---------------------------------------------------------------------------------------------


def hidden_score(text: str) -> float:
    """Return the hidden politeness of a reply: +1 per polite opener, -1 per blunt one."""
    low = text.lower()
    return float(sum(low.count(p) for p in POLITE) - sum(low.count(b) for b in BLUNT))


def simulated_choice(texts: dict[str, str], rng: random.Random) -> dict:
    """Answer a pairwise item the way a noisy annotator with the hidden preference would (`texts` is
    keyed by the handles `next` gave)."""
    (a, ta), (b, tb) = texts.items()
    if rng.random() < NOISE:
        return {"outcome": "preferred", "preferred_response_id": rng.choice([a, b]), "strength": 1}
    sa, sb = hidden_score(ta), hidden_score(tb)
    if sa == sb:
        return {"outcome": "tie"}
    return {"outcome": "preferred", "preferred_response_id": a if sa > sb else b, "strength": 2}


class Api:
    """A tiny JSON client for Arbiter's REST API with token auth."""

    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token

    def post(self, path: str, body: dict | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(
            self.base + path,
            data=json.dumps(body or {}).encode(),
            method="POST",
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as res:
                return res.status, json.loads(res.read() or b"{}")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")


def judge_round(base: str, campaign_id: int, tokens: list[str], seed: int) -> dict[str, int]:
    """Let every simulated annotator judge until the campaign serves them nothing more."""
    counts = {"judgments": 0, "http_errors": 0}
    lock = threading.Lock()

    def annotate(i: int, token: str) -> None:
        rng, api = random.Random(seed * 1000 + i), Api(base, token)
        while True:
            status, body = api.post(f"/api/v1/campaigns/{campaign_id}/next/")
            if status != 200:
                with lock:
                    counts["http_errors"] += 1
                return
            assignment = body["assignment"]
            if assignment is None:
                return
            texts = {r["id"]: r["content"] for r in assignment["item"]["responses"]}
            status, _ = api.post(f"/api/v1/assignments/{assignment['id']}/submit/", simulated_choice(texts, rng))
            with lock:
                counts["judgments" if status in (200, 201) else "http_errors"] += 1

    threads = [threading.Thread(target=annotate, args=(i, t)) for i, t in enumerate(tokens)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


# ---------------------------------------------------------------------------------------------
# Set-up: database, server, models
# ---------------------------------------------------------------------------------------------


def setup_django(work: Path) -> None:
    os.environ["DATABASE_URL"] = f"sqlite:///{work / 'loop.sqlite3'}"
    os.environ["ARBITER_DATA_DIR"] = str(work / "var")
    from config.secret_key import key_file_create, key_file_path

    key_file_create(key_file_path(work / "var"))  # a fresh installation's key file, as `make run` makes
    os.environ["ARBITER_MODEL_ROOTS"] = str(work / "models")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # the server thread shares this process
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def start_server() -> tuple[str, object]:
    """Serve the project's ASGI application with uvicorn in a thread; return its URL."""
    import uvicorn

    from config.asgi import application

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(application, log_level="warning", lifespan="off"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server


def sft_warmup(model_dir: Path, out_dir: Path, *, steps: int, seed: int) -> Path:
    """Teach the tiny LM to answer a question with one corpus sentence; save it to `out_dir`.

    A plain supervised loop on "User: <question>\\nAssistant: <sentence><eos>", loss on the reply
    tokens only. The corpus is a quarter polite, a quarter blunt, so the warmed-up policy is
    neutral on the hidden preference and PPO has room to move it.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.tiny import tiny_corpus

    torch.manual_seed(seed)
    rng = random.Random(seed)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    sentences = [line for line in tiny_corpus(seed, lines=800) if not line.startswith("User:")]
    questions = eval_prompts(64, seed=seed + 99)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        ids, labels = [], []
        for _ in range(16):
            prompt = tok.apply_chat_template(
                [{"role": "user", "content": rng.choice(questions)}], tokenize=False, add_generation_prompt=True
            )
            p = tok(prompt, add_special_tokens=False)["input_ids"]
            r = tok(" " + rng.choice(sentences), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            ids.append(p + r)
            labels.append([-100] * len(p) + r)
        width = max(map(len, ids))
        batch = torch.full((len(ids), width), tok.pad_token_id)
        lab = torch.full((len(ids), width), -100)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, (x, y) in enumerate(zip(ids, labels, strict=True)):
            batch[i, : len(x)], lab[i, : len(y)], mask[i, : len(x)] = torch.tensor(x), torch.tensor(y), 1
        loss = model(input_ids=batch, attention_mask=mask, labels=lab).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    return out_dir


def eval_prompts(n: int, *, seed: int) -> list[str]:
    """Return `n` questions in the tiny corpus' style."""
    from training.tiny import _OBJECTS, _QUESTIONS, _SUBJECTS, _VERBS

    rng = random.Random(seed)
    return [
        rng.choice(_QUESTIONS).format(s=rng.choice(_SUBJECTS), v=rng.choice(_VERBS), o=rng.choice(_OBJECTS))
        for _ in range(n)
    ]


# ---------------------------------------------------------------------------------------------
# The plot
# ---------------------------------------------------------------------------------------------


def svg_plot(rounds: list[dict], path: Path) -> None:
    """Write a small three-panel SVG: hidden score, RM accuracy and KL per round."""
    panels = [
        ("Hidden preference score of the policy", "hidden_score", None),
        ("Reward-model accuracy (vs hidden preference)", "rm_hidden_accuracy", (0.0, 1.0)),
        ("KL(policy ‖ reference) at the end of PPO", "kl", None),
    ]
    w, h, pad = 300, 240, 44
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w * 3}" height="{h}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect width="{w * 3}" height="{h}" fill="white"/>',
    ]
    for p, (title, key, fixed) in enumerate(panels):
        pts = [(r["round"], r[key]) for r in rounds if r.get(key) is not None]
        x0 = p * w
        parts.append(f'<text x="{x0 + w / 2}" y="16" text-anchor="middle" font-weight="bold">{title}</text>')
        if not pts:
            continue
        xs = [x for x, _ in pts]
        lo, hi = fixed or (min(y for _, y in pts), max(y for _, y in pts))
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        if fixed is None:  # room for the value labels above and below the line
            lo, hi = lo - 0.15 * (hi - lo), hi + 0.15 * (hi - lo)
        span = max(xs) - min(xs) or 1

        def sx(x: float, x0: int = x0, xs: list = xs, span: float = span) -> float:
            return x0 + pad + (x - min(xs)) / span * (w - 2 * pad)

        def sy(y: float, lo: float = lo, hi: float = hi) -> float:
            return h - pad - (y - lo) / (hi - lo) * (h - 2 * pad - 10)

        parts.append(
            f'<line x1="{x0 + pad}" y1="{h - pad}" x2="{x0 + w - pad}" y2="{h - pad}" stroke="#888"/>'
            f'<line x1="{x0 + pad}" y1="{h - pad}" x2="{x0 + pad}" y2="{pad - 10}" stroke="#888"/>'
            f'<text x="{x0 + pad - 4}" y="{sy(lo) + 4}" text-anchor="end">{lo:.2g}</text>'
            f'<text x="{x0 + pad - 4}" y="{sy(hi) + 4}" text-anchor="end">{hi:.2g}</text>'
        )
        path_d = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(pts))
        parts.append(f'<path d="{path_d}" fill="none" stroke="#1f6feb" stroke-width="2"/>')
        for x, y in pts:
            parts.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="#1f6feb"/>'
                f'<text x="{sx(x):.1f}" y="{sy(y) - 8:.1f}" text-anchor="middle">{y:.3g}</text>'
                f'<text x="{sx(x):.1f}" y="{h - pad + 14}" text-anchor="middle">round {x}</text>'
            )
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


# ---------------------------------------------------------------------------------------------
# One round
# ---------------------------------------------------------------------------------------------


@dataclass
class RoundReport:
    round: int
    campaign_id: int
    items: int
    judgments: int
    http_errors: int
    dataset_rows: int
    rm_eval_accuracy: float | None
    rm_hidden_accuracy: float | None
    kl: float | None
    hidden_score: float  # of the policy after this round's PPO (round 0: the warmed-up policy)
    polite_share: float
    seconds: dict[str, float] = field(default_factory=dict)


def policy_hidden_score(policy: Path, prompts: list[str], *, seed: int) -> tuple[float, float, list[str]]:
    """Return (mean hidden score, share of polite replies, a few replies) of the policy's samples."""
    from training.generation import generate_responses

    gens = generate_responses(
        [[{"role": "user", "content": p}] for p in prompts], [("policy", str(policy))],
        k=2, max_new_tokens=24, temperature=0.7, batch_size=32, seed=seed,
    )
    texts = [s.text for g in gens for s in g.samples]
    scores = [hidden_score(t) for t in texts]
    return sum(scores) / len(scores), sum(s > 0 for s in scores) / len(scores), texts[:6]


def rm_hidden_accuracy(rm_dir: Path, *, n: int, seed: int) -> float:
    """Return how often the reward model orders two fresh replies as the hidden preference does."""
    from training.scoring import load_scorer
    from training.tiny import tiny_corpus

    rng = random.Random(seed)
    lines = [x for x in tiny_corpus(seed + 7, lines=2000) if not x.startswith("User:")]
    scorer = load_scorer(rm_dir)
    prompts = eval_prompts(n, seed=seed)
    pairs = []
    while len(pairs) < n:
        a, b = rng.sample(lines, 2)
        if hidden_score(a) != hidden_score(b):
            pairs.append((a, b))
    msgs = [[{"role": "user", "content": p}] for p in prompts]
    ra = scorer.score([(m, a) for m, (a, _) in zip(msgs, pairs, strict=True)])
    rb = scorer.score([(m, b) for m, (_, b) in zip(msgs, pairs, strict=True)])
    right = sum((x > y) == (hidden_score(a) > hidden_score(b)) for x, y, (a, b) in zip(ra, rb, pairs, strict=True))
    return right / n


def run(args: argparse.Namespace) -> list[RoundReport]:
    work = Path(tempfile.mkdtemp(prefix="arbiter-loop-"))
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "true"  # dataset builds run on commit, in-process
    setup_django(work)
    import torch
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from rest_framework.authtoken.models import Token

    from annotation.exports import preference_rows
    from annotation.models import Campaign, Prompt, Role
    from annotation.services.campaigns import campaign_create, campaign_set_status, membership_add
    from annotation.services.datasets import dataset_build, dataset_create
    from annotation.services.imports import items_import
    from training.config import RewardModelConfig
    from training.generation import generate_responses
    from training.ppo.config import PPOConfig
    from training.ppo.trainer import train_ppo
    from training.reward import train_reward_model
    from training.rounds.services import Candidate, PromptCandidates, round_create
    from training.scoring import load_scorer
    from training.tiny import build_tiny_models

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    models = work / "models"
    tiny = build_tiny_models(models / "base", seed=args.seed, hidden_size=64, layers=2)
    t = time.perf_counter()
    policy = sft_warmup(tiny.causal_lm, models / "policy-0", steps=args.sft_steps, seed=args.seed)
    print(f"warm-up: {args.sft_steps} supervised steps in {time.perf_counter() - t:.1f}s", flush=True)

    users = get_user_model().objects
    manager = users.create_user("loop-manager", password="x")
    manager.groups.add(Group.objects.get_or_create(name=Role.MANAGER)[0])
    annotators = []
    for i in range(ANNOTATORS):
        u = users.create_user(f"loop-annotator-{i}", password="x")
        u.groups.add(Group.objects.get_or_create(name=Role.ANNOTATOR)[0])
        annotators.append(u)
    tokens = [Token.objects.create(user=u).key for u in annotators]
    base, _server = start_server()

    train_prompts = eval_prompts(args.prompts, seed=args.seed + 1)
    held_out = eval_prompts(args.eval_prompts, seed=args.seed + 2)
    score0, polite0, sample0 = policy_hidden_score(policy, held_out, seed=args.seed)
    reports = [RoundReport(0, 0, 0, 0, 0, 0, None, None, None, score0, polite0)]
    print(f"round 0: hidden score {score0:+.3f}, polite {polite0:.0%}; e.g. {sample0[:2]}", flush=True)

    all_rows: list[dict] = []
    previous: Campaign | None = None
    rm_dir: Path | None = None
    for r in range(1, args.rounds + 1):
        times: dict[str, float] = {}
        # 1. Generate and open the round -------------------------------------------------------
        t = time.perf_counter()
        messages = [[{"role": "user", "content": p}] for p in train_prompts]
        gens = generate_responses(messages, [(f"policy-r{r - 1}", str(policy))], k=args.k,
                                  max_new_tokens=24, temperature=1.0, batch_size=32, seed=args.seed + r)
        if previous is None:
            campaign = campaign_create(created_by=manager, name="Closed loop, round 1", overlap=ANNOTATORS,
                                       allow_both_bad=False, use_strength=True)
            lines = []
            for i, g in enumerate(gens):
                texts = list(dict.fromkeys(s.text for s in g.samples))
                if len(texts) < 2:
                    continue
                a, b = random.Random(args.seed + i).sample(texts, 2)
                lines.append(json.dumps({"id": f"q{i}", "messages": messages[i], "responses": [
                    {"content": a, "model": g.samples[0].checkpoint}, {"content": b, "model": g.samples[0].checkpoint}]}))
            items_import(campaign=campaign, lines=lines)
            for u in annotators:
                membership_add(campaign=campaign, user=u, role=Role.ANNOTATOR)
            campaign_set_status(campaign=campaign, status=Campaign.Status.ACTIVE)
        else:
            prompt_ids = dict(Prompt.objects.filter(campaign=previous).values_list("external_id", "id"))
            by_text = {json.dumps(m): i for i, m in enumerate(messages)}
            candidates = []
            for p in Prompt.objects.filter(campaign=previous):
                g = gens[by_text[json.dumps(p.messages)]]
                candidates.append(PromptCandidates(p.pk, [Candidate(s.checkpoint, s.text) for s in g.samples]))
            del prompt_ids
            result = round_create(campaign=previous, generations=candidates, selection="uncertain",
                                  scorer=load_scorer(rm_dir), created_by=manager, seed=args.seed + r,
                                  activate=True)
            campaign = result.campaign
        campaign.refresh_from_db()
        times["generate"] = time.perf_counter() - t

        # 2. Judge over HTTP ---------------------------------------------------------------------
        t = time.perf_counter()
        counts = judge_round(base, campaign.pk, tokens, seed=args.seed + r)
        times["judge"] = time.perf_counter() - t

        # 3. Aggregate ---------------------------------------------------------------------------
        t = time.perf_counter()
        dataset = dataset_create(campaign=campaign, method="reliability_weighted", created_by=manager)
        dataset = dataset_build(dataset_id=dataset.pk)
        if dataset.status != "ready":
            raise SystemExit(f"round {r}: dataset failed: {dataset.error}")
        rows = [row for row in preference_rows(dataset) if row.get("margin", 1) > 0]
        all_rows += rows
        times["aggregate"] = time.perf_counter() - t

        # 4. Reward model on every snapshot so far -----------------------------------------------
        t = time.perf_counter()
        rm_config = RewardModelConfig(output_dir=str(work / "runs" / f"rm-{r}"), learning_rate=1e-3,
                                      num_train_epochs=args.rm_epochs, per_device_train_batch_size=16,
                                      max_length=96, eval_fraction=0.2, seed=args.seed, logging_steps=5)
        rm = train_reward_model(rm_config, dataset=all_rows, base_model_path=tiny.reward_base)
        rm_dir = rm.artifact_dir
        rm_eval = rm.metrics.get("eval_accuracy")
        rm_hidden = rm_hidden_accuracy(rm_dir, n=200, seed=args.seed + r)
        times["reward_model"] = time.perf_counter() - t

        # 5. PPO against it ----------------------------------------------------------------------
        t = time.perf_counter()
        ppo_config = PPOConfig(output_dir=str(work / "runs" / f"ppo-{r}"), learning_rate=args.ppo_lr,
                               num_steps=args.ppo_steps, batch_size=32, mini_batch_size=16,
                               gradient_accumulation_steps=1, num_ppo_epochs=2, response_length=24,
                               temperature=1.0, kl_coef=args.kl_coef, save_steps=10_000,
                               sample_steps=None, seed=args.seed + r)
        ppo = train_ppo(ppo_config, prompts=messages, policy_path=policy, reward_model_path=rm_dir)
        policy = ppo.artifact_dir
        tail = ppo.log_history[-5:]
        kl = sum(h["objective/kl"] for h in tail) / len(tail)
        times["ppo"] = time.perf_counter() - t

        # 6. Score the new policy with the hidden preference -------------------------------------
        score, polite, sample = policy_hidden_score(policy, held_out, seed=args.seed)
        report = RoundReport(r, campaign.pk, campaign.item_count, counts["judgments"], counts["http_errors"],
                             len(rows), rm_eval, rm_hidden, kl, score, polite,
                             {k: round(v, 1) for k, v in times.items()})
        reports.append(report)
        print(f"round {r}: {report}\n  e.g. {sample[:3]}", flush=True)
        previous = campaign
    shutil.rmtree(work, ignore_errors=True)
    return reports


def table(reports: list[RoundReport]) -> str:
    lines = [
        "| round | items | judgments (HTTP) | pairs in snapshot | RM held-out acc. | RM acc. vs hidden | "
        "KL after PPO | hidden score of policy | polite replies |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in reports:
        def f(x: float | None, fmt: str) -> str:
            return "—" if x is None else format(x, fmt)

        lines.append(
            f"| {r.round} | {r.items or '—'} | {r.judgments or '—'} | {r.dataset_rows or '—'} | "
            f"{f(r.rm_eval_accuracy, '.3f')} | {f(r.rm_hidden_accuracy, '.3f')} | {f(r.kl, '.3f')} | "
            f"{r.hidden_score:+.3f} | {r.polite_share:.0%} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--eval-prompts", type=int, default=64)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--sft-steps", type=int, default=300)
    parser.add_argument("--rm-epochs", type=float, default=8)
    parser.add_argument("--ppo-steps", type=int, default=30)
    parser.add_argument("--ppo-lr", type=float, default=1e-3)
    parser.add_argument("--kl-coef", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "loop")
    args = parser.parse_args()
    t = time.perf_counter()
    reports = run(args)
    print(table(reports))
    print(f"\nwall time {time.perf_counter() - t:.0f}s")
    args.out.with_suffix(".json").write_text(json.dumps([asdict(r) for r in reports], indent=2) + "\n")
    svg_plot([asdict(r) for r in reports], args.out.with_suffix(".svg"))


if __name__ == "__main__":
    main()
