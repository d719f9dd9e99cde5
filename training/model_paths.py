"""Where base models may be loaded from. No Django here.

Arbiter never downloads a model: every base model is a local folder (written by
`save_pretrained`) under one of the configured model roots. Django passes the roots from the
`ARBITER_MODEL_ROOTS` setting; this module only takes them as an argument.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

# "gpt2", "org/name", "org/name-v1.5": what a Hugging Face Hub id looks like.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


class ModelPathError(ValueError):
    """A base-model path that Arbiter refuses to load."""


def resolve_model_path(
    path: str | os.PathLike[str], *, roots: Iterable[str | os.PathLike[str]]
) -> Path:
    """Return the real path of a local model folder under one of `roots`, or raise ModelPathError.

    Symlinks and `..` are resolved before the check, so a link inside a root that points
    outside it is refused. The folder must exist and hold a `config.json`.
    """
    root_paths = [Path(root).resolve() for root in roots]
    if not root_paths:
        raise ModelPathError(
            "No model roots are configured, so no base model can be loaded. Set ARBITER_MODEL_ROOTS "
            "to the folder(s) that hold your models."
        )
    text = os.fspath(path) if isinstance(path, str | os.PathLike) else None
    if not text or not text.strip():
        raise ModelPathError(f"The model path must be a non-empty path string, got {path!r}.")
    roots_text = ", ".join(str(r) for r in root_paths)
    candidate = Path(text)
    if not candidate.is_absolute():
        if _HUB_ID.match(text) and not text.startswith("."):
            raise ModelPathError(
                f"{text!r} looks like a Hugging Face Hub id; Arbiter never downloads models. Save the "
                f"model with save_pretrained() under one of the model roots ({roots_text}) and give its "
                "absolute path."
            )
        raise ModelPathError(
            f"The model path {text!r} is relative; give the absolute path of a folder under one of the "
            f"model roots ({roots_text})."
        )
    try:
        real = candidate.resolve(strict=True)
    except (FileNotFoundError, RuntimeError, OSError):
        raise ModelPathError(
            f"The model path {text!r} does not exist. Check the path, or save the model there with "
            "save_pretrained()."
        ) from None
    if not any(real == root or real.is_relative_to(root) for root in root_paths):
        shown = f"{text!r}" if str(real) == text else f"{text!r} (resolves to {str(real)!r})"
        raise ModelPathError(
            f"The model path {shown} is outside the model roots ({roots_text}). Move or copy the model "
            "under a root, or add its folder to ARBITER_MODEL_ROOTS."
        )
    if not real.is_dir() or not (real / "config.json").is_file():
        raise ModelPathError(
            f"The model path {text!r} is not a model folder (no config.json). Give the folder written "
            "by save_pretrained()."
        )
    return real


def local_model_dir(path: str | os.PathLike[str]) -> Path:
    """Return the real path of an existing local model folder, refusing hub ids (no roots check).

    Used by the training functions when called without roots (tests, scripts); the worker
    passes the configured roots and gets the full check of `resolve_model_path`.
    """
    candidate = Path(os.fspath(path))
    if not candidate.is_absolute() and candidate.exists():
        candidate = candidate.resolve()
    # A relative path that does not exist gets resolve_model_path's hub-id / relative-path error.
    return resolve_model_path(
        candidate if candidate.is_absolute() else path, roots=[Path("/").resolve()]
    )
