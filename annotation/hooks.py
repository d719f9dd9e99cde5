"""What annotation announces to the apps built on it: a judgment recorded, a campaign closed.

Annotation never imports the apps that build on it (training builds on annotation, never the
reverse), so a call that must point back up is a hook: an app registers its receivers in its
`AppConfig.ready()`, and annotation calls them after the transaction that made the change
commits (`transaction.on_commit`). A change that is rolled back announces nothing.

A registry of typed functions rather than Django signals: the events and their arguments are
written here, where a reader of annotation finds them; a receiver is a plain function with
keyword-only arguments that a type checker follows into; registering the same receiver twice
is a no-op; and nothing is scheduled when nobody listens. A signal's `send(**kwargs)` is
checked by nothing, and its receivers are found only by searching for `connect`.

A receiver that raises behaves as any `on_commit` callback: the change is already committed,
the error reaches the code that committed, and the callbacks registered after it do not run.

`judgment_recorded` is announced only for a campaign whose `announce_judgments` flag is set
(serving reads the flag in the statement that locks the assignment, so judging a campaign that
nobody listens to costs nothing more); an app that listens keeps the flag current in the same
transaction that starts or stops its interest in the campaign.
"""

from __future__ import annotations

import functools
from typing import Protocol

from django.db import transaction


class CampaignReceiver(Protocol):
    def __call__(self, *, campaign_id: int) -> None: ...


_judgment_recorded: list[CampaignReceiver] = []
_campaign_closed: list[CampaignReceiver] = []


def on_judgment_recorded(receiver: CampaignReceiver) -> None:
    """Call `receiver(campaign_id=...)` after each committed judgment of a campaign that announces them."""
    _register(_judgment_recorded, receiver)


def on_campaign_closed(receiver: CampaignReceiver) -> None:
    """Call `receiver(campaign_id=...)` after a campaign's closing commits."""
    _register(_campaign_closed, receiver)


def judgment_recorded(*, campaign_id: int) -> None:
    """Announce, once the current transaction commits, that a judgment of the campaign was stored."""
    _announce(_judgment_recorded, campaign_id)


def campaign_closed(*, campaign_id: int) -> None:
    """Announce, once the current transaction commits, that the campaign was closed."""
    _announce(_campaign_closed, campaign_id)


def _register(receivers: list[CampaignReceiver], receiver: CampaignReceiver) -> None:
    if receiver not in receivers:
        receivers.append(receiver)


def _announce(receivers: list[CampaignReceiver], campaign_id: int) -> None:
    for receiver in receivers:
        transaction.on_commit(functools.partial(receiver, campaign_id=campaign_id))
