from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.errors import ApplicationError
from annotation.models import Campaign
from annotation.services.imports import ImportRejected, items_import


class Command(BaseCommand):
    help = "Import a JSONL file into a campaign, all or nothing; every bad line is reported."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("campaign_id", type=int)
        parser.add_argument("path", help="JSONL file: Arbiter's format, TRL preference rows or HH transcripts")
        parser.add_argument("--format", default="auto", choices=["auto", "arbiter", "trl", "hh"])

    def handle(self, *args, campaign_id: int, path: str, format: str, **options) -> None:
        campaign = Campaign.objects.filter(pk=campaign_id).first()
        if campaign is None:
            raise CommandError(f"No campaign with id {campaign_id}.")
        try:
            with open(path, "rb") as fh:
                result = items_import(campaign=campaign, lines=fh, format=format)
        except FileNotFoundError as exc:
            raise CommandError(f"No such file: {path}") from exc
        except ImportRejected as exc:
            for e in exc.extra["errors"]:
                self.stderr.write(f"line {e['line']}: {e['message']}")
            raise CommandError(exc.message) from exc
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        kinds = ", ".join(f"{n} {fmt}" for fmt, n in sorted(result.formats.items()))
        self.stdout.write(self.style.SUCCESS(f"Imported {result.items} items ({kinds}) into “{campaign.name}”."))
