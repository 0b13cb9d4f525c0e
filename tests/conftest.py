"""Shared fixtures: paths to the shared data, a private MLflow store, CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_DATA = SHARED / "data"


@pytest.fixture
def shared_data() -> Path:
    """The read-only real data samples beside the repository."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data missing at {SHARED_DATA}: the tests need ../shared beside the repo")
    return SHARED_DATA


def run_cli(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run `python -m maetune ARGS` in ``cwd`` and capture its output."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("RAY_ADDRESS", None) if "RAY_ADDRESS" not in (env or {}) else None
    return subprocess.run(
        [sys.executable, "-m", "maetune", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
