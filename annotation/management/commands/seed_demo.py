import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from annotation.demo import demo_ranking_rows, demo_rows, demo_single_rows
from annotation.models import Campaign, Role
from annotation.services.campaigns import campaign_create, campaign_set_status, membership_add
from annotation.services.imports import items_import

DEMO_CAMPAIGN = "Demo: careful vs hasty answers"
INSTRUCTIONS = """\
Read the conversation, then the two responses. Pick the **better final reply**:

- Correctness first: a wrong answer loses to a right one, however short.
- Then helpfulness: does it show its work or explain briefly?
- Use **tie** when they are equally good, **both bad** when neither is acceptable.

Keyboard: `a` / `b` choose, `1` `2` `3` strength, `Enter` submit, `s` skip, `i` these instructions.
"""
RANK_INSTRUCTIONS = "Order the replies from best to worst. Correct beats wrong; concise beats padded. Tie replies that are equally good."
RATE_INSTRUCTIONS = "Rate each reply on each criterion. **Correctness**: is the answer right? **Helpfulness**: does it explain enough, without padding?"
THUMBS_INSTRUCTIONS = "Is this a good reply? Thumbs up or down; say why if it is wrong, and fix it if you can."
RATING_CRITERIA = [
    {"name": "correctness", "label": "Correctness", "scale": {"min": 1, "max": 5, "labels": {"1": "Wrong", "3": "Partly right", "5": "Fully right"}}},
    {"name": "helpfulness", "label": "Helpfulness", "scale": {"min": 1, "max": 7, "labels": {"1": "Useless", "4": "Adequate", "7": "Excellent"}}},
]
THUMBS = [{"name": "thumbs", "label": "Good reply?", "scale": {"min": 0, "max": 1, "labels": {"0": "Thumbs down", "1": "Thumbs up"}}}]
USERS = [("manager", Role.MANAGER), ("annotator1", Role.ANNOTATOR), ("annotator2", Role.ANNOTATOR),
         ("researcher", Role.RESEARCHER)]


class Command(BaseCommand):
    help = "Create demo users (printing their passwords) and a pairwise demo campaign Arbiter generates itself."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--items", type=int, default=240)
        parser.add_argument("--keep-passwords", action="store_true", help="Do not reset existing users' passwords.")

    @transaction.atomic
    def handle(self, *args, items: int, keep_passwords: bool, **options) -> None:
        User = get_user_model()
        groups = {role: Group.objects.get_or_create(name=role.value)[0] for role in Role}
        passwords: dict[str, str] = {}
        users = {}
        for username, role in USERS:
            user, created = User.objects.get_or_create(username=username)
            user.groups.set([groups[role]])
            if created or not keep_passwords:
                passwords[username] = secrets.token_urlsafe(9)
                user.set_password(passwords[username])
            user.is_staff = user.is_superuser = False
            user.save()
            users[username] = user

        demos = [
            (DEMO_CAMPAIGN, dict(instructions=INSTRUCTIONS, overlap=2), demo_rows(items)),
            ("Demo: rank three answers", dict(kind="ranking", instructions=RANK_INSTRUCTIONS, allow_editing=True),
             demo_ranking_rows()),
            ("Demo: rate helpfulness and correctness", dict(kind="rating", criteria=RATING_CRITERIA,
             instructions=RATE_INSTRUCTIONS), demo_rows(60, seed=17)),
            ("Demo: thumbs up or down", dict(kind="rating", criteria=THUMBS, allow_editing=True,
             instructions=THUMBS_INSTRUCTIONS), demo_single_rows()),
        ]
        for name, options, rows in demos:
            campaign = Campaign.objects.filter(name=name).first()
            if campaign is None:
                campaign = campaign_create(created_by=users["manager"], name=name, **options)
                items_import(campaign=campaign, lines=_jsonl(rows))
                campaign_set_status(campaign=campaign, status=Campaign.Status.ACTIVE)
                self.stdout.write(f"Created “{campaign.name}” with {campaign.items.count()} items.")
            for username, role in USERS[1:]:
                membership_add(campaign=campaign, user=users[username], role=role)

        self.stdout.write(self.style.SUCCESS("Demo users (log in at http://127.0.0.1:8000/login/):"))
        for username, role in USERS:
            pw = passwords.get(username, "(unchanged)")
            self.stdout.write(f"  {role.value:<10} {username:<11} password: {pw}")


def _jsonl(rows):
    import json

    for row in rows:
        yield json.dumps(row)
