"""Pseudonymous annotator ids: what datasets, their cards and exports name instead of user ids."""

import hashlib
import hmac

from django.conf import settings


def annotator_pseudonym(user_id: int) -> str:
    """Return the annotator's stable pseudonymous id: an HMAC of the user id keyed by SECRET_KEY.

    Stable across datasets and exports of this installation; not reversible without the key.
    """
    digest = hmac.new(settings.SECRET_KEY.encode(), f"arbiter.annotator:{user_id}".encode(), hashlib.sha256)
    return "a_" + digest.hexdigest()[:16]
