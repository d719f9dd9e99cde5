"""Pseudonymous annotator ids: what datasets, their cards and exports name instead of user ids."""

import hashlib
import hmac

from django.conf import settings

_PURPOSE = b"arbiter.pseudonym"


def pseudonym_key() -> bytes:
    """Return the key pseudonyms are made with: derived from the installation's secret, never the secret itself.

    The secret is ARBITER_PSEUDONYM_KEY when set (the old SECRET_KEY, after a rotation, keeps
    pseudonyms as they were), else SECRET_KEY.
    """
    secret = settings.ARBITER_PSEUDONYM_KEY or settings.SECRET_KEY
    return hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()


def annotator_pseudonym(user_id: int) -> str:
    """Return the annotator's stable pseudonymous id: an HMAC of the user id under `pseudonym_key()`.

    Stable across datasets and exports of this installation while its key stays; not reversible
    without the key.
    """
    digest = hmac.new(pseudonym_key(), f"arbiter.annotator:{user_id}".encode(), hashlib.sha256)
    return "a_" + digest.hexdigest()[:16]
