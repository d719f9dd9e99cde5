"""Test settings: config.settings, with a secret key made fresh for each test run.

The suite sets ARBITER_SECRET_KEY as a deployment does (a random one, so no key is written in the
code); the rule itself (no key outside debug: refuse to start) is tested in
tests/config/test_secret_key.py with a scrubbed environment. Subprocesses the tests start inherit
the key through the environment.
"""

import os
import secrets

os.environ.setdefault("ARBITER_SECRET_KEY", secrets.token_urlsafe(50))

from config.settings import *  # noqa: E402, F403
