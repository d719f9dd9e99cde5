from pathlib import Path

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = (
        "Write a tiny causal LM and a tiny reward-model base (a one-label sequence classifier), with a "
        "tokenizer trained locally, under DIR: for tests, demos and smoke runs. Nothing is downloaded."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "directory",
            type=Path,
            help="Folder to write tiny-causal-lm/ and tiny-reward-base/ into.",
        )
        parser.add_argument(
            "--seed", type=int, default=0, help="Same seed, byte-identical files (default 0)."
        )

    def handle(self, *args, directory: Path, seed: int, **options) -> None:
        from training.tiny import build_tiny_models

        models = build_tiny_models(directory, seed=seed)
        self.stdout.write(f"causal LM:         {models.causal_lm}")
        self.stdout.write(f"reward-model base: {models.reward_base}")
        self.stdout.write(
            "Both load with transformers' from_pretrained (and the reward base with "
            'pipeline("text-classification")). Put DIR under ARBITER_MODEL_ROOTS to train on them.'
        )
