"""Running the project's Makefile from tests, with the virtualenv that runs the tests."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)


def require_installed_venv(pyproject: Path = ROOT / "pyproject.toml") -> Path:
    """The test venv, if `make install` made it for this pyproject.toml (else make would
    install into it): skip, or fail under CI, otherwise."""
    digest = hashlib.sha1(pyproject.read_bytes()).hexdigest()[:12]  # as the Makefile
    if not (VENV / f".installed-{digest}").exists():
        message = f"{VENV} was not installed by `make install` for this pyproject.toml"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return VENV


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without our settings, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STEWARD_", "OPENAI_", "MAKE", "MFLAGS"))
        and k not in {"DATABASE_URL", "HOST", "PORT", "VENV"}
    }
    return {**env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **extra}
