import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from training.models import TrainingRun


class Command(BaseCommand):
    help = (
        "Score prompt/response pairs from a JSON Lines file with a succeeded reward-model run. Each line is "
        '{"prompt": [messages] or "a user message", "response": "..."}; each is written back with its "score".'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("run_id", type=int)
        parser.add_argument("file", type=Path, help="JSON Lines of {prompt, response}.")
        parser.add_argument("--output", type=Path, help="Write here instead of standard output.")
        parser.add_argument("--batch-size", type=int, default=16)

    def handle(
        self, *args, run_id: int, file: Path, output: Path | None, batch_size: int, **options
    ) -> None:
        run = TrainingRun.objects.filter(pk=run_id).first()
        if run is None:
            raise CommandError(f"No training run with id {run_id}.")
        if run.kind != TrainingRun.Kind.REWARD or run.status != TrainingRun.Status.SUCCEEDED:
            raise CommandError(
                f"Run {run_id} is a {run.kind} run that is {run.status}; only a succeeded reward-model run scores."
            )
        rows, pairs = [], []
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CommandError(f"{file}, line {number}: not valid JSON ({exc.msg}).") from exc
            prompt = row.get("prompt") if isinstance(row, dict) else None
            if isinstance(prompt, str):
                prompt = [{"role": "user", "content": prompt}]
            if not isinstance(prompt, list):
                raise CommandError(
                    f"{file}, line {number}: prompt: must be a list of messages or a string."
                )
            if not isinstance(row.get("response"), str):
                raise CommandError(f"{file}, line {number}: response: must be a string.")
            rows.append(row)
            pairs.append((prompt, row["response"]))
        from training.formatting import FormatError
        from training.scoring import load_scorer

        scorer = load_scorer(run.artifacts["model"], batch_size=batch_size)
        try:
            scores = scorer.score(pairs)
        except FormatError as exc:
            raise CommandError(f"{file}: {exc}") from exc
        lines = (
            json.dumps({**row, "score": score}, ensure_ascii=False)
            for row, score in zip(rows, scores, strict=True)
        )
        if output is None:
            for line in lines:
                self.stdout.write(line)
            return
        with output.open("w", encoding="utf-8") as f:
            for line in lines:
                f.write(line + "\n")
        self.stderr.write(f"Scored {len(scores)} pairs into {output}.")
