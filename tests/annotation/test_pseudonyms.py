"""Annotator pseudonyms: keyed by a key derived from the installation's secret."""

import hashlib
import hmac

from annotation.pseudonyms import annotator_pseudonym, pseudonym_key


def test_pseudonyms_are_stable_under_one_key_and_differ_between_keys(settings):
    """One installation names an annotator the same way every time; another key gives other names."""
    settings.SECRET_KEY, settings.ARBITER_PSEUDONYM_KEY = "a" * 50, ""
    first = [annotator_pseudonym(u) for u in range(1, 51)]
    assert first == [annotator_pseudonym(u) for u in range(1, 51)]
    assert len(set(first)) == 50 and all(p.startswith("a_") and len(p) == 18 for p in first)
    settings.SECRET_KEY = "b" * 50
    assert not set(first) & {annotator_pseudonym(u) for u in range(1, 51)}


def test_pseudonyms_use_a_derived_key_never_the_secret_itself(settings):
    """The HMAC key is HMAC(secret, "arbiter.pseudonym"), so a pseudonym is not a MAC under SECRET_KEY."""
    settings.SECRET_KEY, settings.ARBITER_PSEUDONYM_KEY = "s" * 50, ""
    derived = hmac.new(b"s" * 50, b"arbiter.pseudonym", hashlib.sha256).digest()
    assert pseudonym_key() == derived != settings.SECRET_KEY.encode()
    raw = hmac.new(settings.SECRET_KEY.encode(), b"arbiter.annotator:7", hashlib.sha256).hexdigest()[:16]
    assert annotator_pseudonym(7) == "a_" + hmac.new(derived, b"arbiter.annotator:7", hashlib.sha256).hexdigest()[:16]
    assert annotator_pseudonym(7) != "a_" + raw


def test_pseudonym_key_keeps_pseudonyms_across_a_secret_key_rotation(settings):
    """After rotating SECRET_KEY, ARBITER_PSEUDONYM_KEY set to the old key keeps every pseudonym."""
    settings.SECRET_KEY, settings.ARBITER_PSEUDONYM_KEY = "old" * 20, ""
    before = [annotator_pseudonym(u) for u in range(1, 21)]
    settings.SECRET_KEY = "new" * 20
    assert [annotator_pseudonym(u) for u in range(1, 21)] != before
    settings.ARBITER_PSEUDONYM_KEY = "old" * 20
    assert [annotator_pseudonym(u) for u in range(1, 21)] == before
