"""No public secret: ARBITER_SECRET_KEY, else the installation's key file, else refuse to start.

Settings are loaded in subprocesses with a scrubbed environment (no ARBITER_SECRET_KEY, a fresh
data folder), as a deployment starts.
"""

import ast
import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from config.secret_key import key_file_create, key_file_path, secret_key_resolve

ROOT = Path(__file__).resolve().parents[2]
START = (
    "import hashlib, django; django.setup(); from django.conf import settings; "
    "print('key-sha256', hashlib.sha256(settings.SECRET_KEY.encode()).hexdigest())"
)


def start(data_dir: Path, **env: str) -> subprocess.CompletedProcess:
    """Load the settings and set Django up, as any Arbiter process starts, with only `env` set."""
    scrubbed = {"PATH": os.environ["PATH"], "HOME": str(data_dir), "ARBITER_DATA_DIR": str(data_dir),
                "DJANGO_SETTINGS_MODULE": "config.settings", **env}
    return subprocess.run([sys.executable, "-c", START], cwd=ROOT, env=scrubbed, capture_output=True, text=True,
                          timeout=120)


def started_with(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.split("key-sha256 ")[1].strip()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_refuses_to_start_without_a_key_outside_debug(tmp_path):
    """Without ARBITER_SECRET_KEY or a key file, and not in debug, the settings refuse to load,
    naming ARBITER_SECRET_KEY and how to make a key; no key file is written behind the user's back."""
    proc = start(tmp_path)
    assert proc.returncode != 0
    assert ("ImproperlyConfigured: Arbiter has no secret key, and refuses to start without one. "
            "Set ARBITER_SECRET_KEY (generate one with "
            '`python -c "import secrets; print(secrets.token_urlsafe(50))"`)') in proc.stderr
    assert f"`python -m config.secret_key {tmp_path}` (what `make run` does)" in proc.stderr
    assert not key_file_path(tmp_path).exists()


def test_environment_key_is_used_and_no_key_file_is_written(tmp_path):
    """ARBITER_SECRET_KEY is the key when set; the data folder gets no key file."""
    assert started_with(start(tmp_path, ARBITER_SECRET_KEY="k" * 50)) == sha256("k" * 50)
    assert not key_file_path(tmp_path).exists()


def test_make_run_step_creates_the_key_file_once_owner_only_and_settings_use_it(tmp_path):
    """`python -m config.secret_key DATA_DIR` (run by `make run`) creates DATA_DIR/secret_key with
    mode 0600 and never prints the key; running it again keeps the key; settings then start
    without ARBITER_SECRET_KEY and without debug, on that key, every time."""
    step = [sys.executable, "-m", "config.secret_key", str(tmp_path)]
    first = subprocess.run(step, cwd=ROOT, capture_output=True, text=True, check=True)
    path = key_file_path(tmp_path)
    key = path.read_text().strip()
    assert len(key) >= 50
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert f"Created this installation's secret key in {path} (mode 0600)" in first.stdout
    second = subprocess.run(step, cwd=ROOT, capture_output=True, text=True, check=True)
    assert f"Using the secret key in {path}." in second.stdout
    assert path.read_text().strip() == key
    assert key not in first.stdout + first.stderr + second.stdout + second.stderr
    assert started_with(start(tmp_path)) == sha256(key)
    assert started_with(start(tmp_path)) == sha256(key)


def test_debug_creates_the_key_file_on_first_start_and_reuses_it(tmp_path):
    """In local debug (ARBITER_DEBUG=1) a missing key file is created (0600) on the first start,
    so sessions and pseudonyms survive a restart."""
    first = started_with(start(tmp_path, ARBITER_DEBUG="1"))
    path = key_file_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first == sha256(path.read_text().strip())
    assert started_with(start(tmp_path, ARBITER_DEBUG="1")) == first


def test_key_file_others_can_read_or_empty_is_refused(tmp_path):
    """A key file readable by group or others, or empty, is refused with the fix named."""
    path = key_file_path(tmp_path)
    assert key_file_create(path) is True
    path.chmod(0o644)
    with pytest.raises(ImproperlyConfigured, match=r"can be read by other users \(mode 0644\); run `chmod 600 "):
        secret_key_resolve(env_key="", data_dir=tmp_path, debug=False)
    path.write_text("\n")
    path.chmod(0o600)
    with pytest.raises(ImproperlyConfigured, match="is empty; delete it and run `python -m config.secret_key "):
        secret_key_resolve(env_key="", data_dir=tmp_path, debug=True)


def test_key_file_is_never_overwritten(tmp_path):
    """Creating the key file again (a second `make run`, two processes starting) keeps the first key."""
    path = key_file_path(tmp_path)
    assert key_file_create(path) is True
    key = path.read_text()
    assert key_file_create(path) is False
    assert path.read_text() == key
    assert secret_key_resolve(env_key="", data_dir=tmp_path, debug=False) == key.strip()


def test_no_public_key_is_left_in_the_code():
    """No tracked file carries the old built-in key or Django's insecure-key prefix, and no code
    outside the tests assigns a literal to SECRET_KEY or defaults ARBITER_SECRET_KEY to one."""
    needles = ["arbiter-" + "insecure", "insecure-" + "local-key", "django-" + "insecure-", "key-" + "change-me"]
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert len(files) > 100
    for name in files:
        path = ROOT / name
        if not path.is_file() or path.suffix in {".png", ".svg", ".ico", ".woff2"}:
            continue
        text = path.read_text(errors="ignore")
        for needle in needles:
            assert needle not in text, f"{name} contains {needle!r}"
        if path.suffix == ".py" and not name.startswith("tests/"):
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and any(
                        isinstance(t, ast.Name) and t.id == "SECRET_KEY" for t in node.targets):
                    raise AssertionError(f"{name}:{node.lineno} assigns a literal SECRET_KEY")
                if (isinstance(node, ast.Call) and len(node.args) == 2
                        and isinstance(node.args[0], ast.Constant) and node.args[0].value == "ARBITER_SECRET_KEY"
                        and isinstance(node.args[1], ast.Constant)):
                    assert node.args[1].value == "", f"{name}:{node.lineno} defaults ARBITER_SECRET_KEY"


def test_make_run_creates_the_key_before_anything_loads_settings():
    """`make run`'s first step makes the key file (unless ARBITER_SECRET_KEY is set), before migrate."""
    recipe = (ROOT / "Makefile").read_text().split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert recipe.index('test -n "$$ARBITER_SECRET_KEY" || $(PY) -m config.secret_key "$(DATA_DIR)"') < recipe.index(
        "manage.py migrate")


@pytest.mark.django_db
def test_rotation_keeps_sessions_only_with_the_old_key_as_fallback_and_tokens_always(client, annotator, settings):
    """Rotating SECRET_KEY logs browser sessions out, unless the old key is in
    ARBITER_SECRET_KEY_FALLBACKS: then a session's next request re-signs it under the new key, and
    the fallback can go. API tokens are random rows, not signed, and keep working."""
    home = reverse("home")
    client.force_login(annotator)
    assert client.get(home).status_code == 200
    settings.SECRET_KEY = "b" * 50
    assert client.get(home).status_code == 302  # logged out
    client.force_login(annotator)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "c" * 50, ["b" * 50]
    assert client.get(home).status_code == 200  # kept, and re-signed under the new key
    settings.SECRET_KEY_FALLBACKS = []
    assert client.get(home).status_code == 200
    token = Token.objects.create(user=annotator)
    settings.SECRET_KEY = "d" * 50
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert api.get(reverse("api:campaign_list")).status_code == 200
