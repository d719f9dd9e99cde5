"""The installation's secret key: ARBITER_SECRET_KEY, else the key file in the data folder.

There is no built-in key. settings.py calls `secret_key_resolve`; `make run` creates the key file
first with `python -m config.secret_key DATA_DIR`. Without either, Arbiter refuses to start,
except in local debug (ARBITER_DEBUG on), where the key file is created on first start so that
sessions and pseudonyms survive a restart. The key itself is never printed.
"""

import os
import stat
import sys
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key

KEY_FILE_NAME = "secret_key"
GENERATE_HINT = 'python -c "import secrets; print(secrets.token_urlsafe(50))"'


def key_file_path(data_dir: Path) -> Path:
    """Return where the installation's key file lives in the data folder."""
    return Path(data_dir) / KEY_FILE_NAME


def key_file_create(path: Path) -> bool:
    """Create the key file with a new random key, readable by its owner only (mode 0600).

    Return True if this call created it, False if it already existed (it is never overwritten,
    so concurrent first starts agree on one key).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, (get_random_secret_key() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def key_file_read(path: Path) -> str:
    """Return the key stored in `path`, refusing a file others can read or an empty one."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ImproperlyConfigured(
            f"The secret key file {path} can be read by other users (mode {mode:04o}); "
            f"run `chmod 600 {path}`, or set ARBITER_SECRET_KEY instead."
        )
    key = path.read_text().strip()
    if not key:
        raise ImproperlyConfigured(
            f"The secret key file {path} is empty; delete it and run `python -m config.secret_key "
            f"{path.parent}`, or set ARBITER_SECRET_KEY (generate one with `{GENERATE_HINT}`)."
        )
    return key


def missing_key_message(data_dir: Path) -> str:
    """Return the refusal a deployment without a key gets: what to set and how to make a key."""
    return (
        "Arbiter has no secret key, and refuses to start without one. Set ARBITER_SECRET_KEY "
        f"(generate one with `{GENERATE_HINT}`), or create this installation's key file "
        f"{key_file_path(data_dir)} with `python -m config.secret_key {data_dir}` (what `make run` "
        "does). Only local debug (ARBITER_DEBUG=1) creates the key file by itself."
    )


def secret_key_resolve(*, env_key: str, data_dir: Path, debug: bool) -> str:
    """Return the installation's secret key: `env_key` if set, else the data folder's key file.

    Without either, raise ImproperlyConfigured naming ARBITER_SECRET_KEY, unless `debug`, where
    the key file is created.
    """
    if env_key.strip():
        return env_key.strip()
    path = key_file_path(data_dir)
    if not path.exists():
        if not debug:
            raise ImproperlyConfigured(missing_key_message(data_dir))
        key_file_create(path)
    return key_file_read(path)


def main(argv: list[str]) -> int:
    """`python -m config.secret_key DATA_DIR`: create DATA_DIR/secret_key unless it exists."""
    if len(argv) != 1:
        print("usage: python -m config.secret_key DATA_DIR", file=sys.stderr)
        return 2
    path = key_file_path(Path(argv[0]))
    if key_file_create(path):
        print(f"Created this installation's secret key in {path} (mode 0600). Keep it; back it up with the data.")
        return 0
    try:
        key_file_read(path)  # refuse a file others can read, as settings will
    except ImproperlyConfigured as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"Using the secret key in {path}.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
