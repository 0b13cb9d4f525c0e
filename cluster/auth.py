"""Ray token authentication: where the token lives, making one, and the client environment.

Ray 2.52+ checks a shared secret on every gRPC and dashboard/job-server request when a process runs
with ``RAY_AUTH_MODE=token``. Every Ray process and client looks for the token in the same order
(Ray's C++ ``AuthenticationTokenLoader``): ``RAY_AUTH_TOKEN``, then the file named by
``RAY_AUTH_TOKEN_PATH``, then ``~/.ray/auth_token``. A client without ``RAY_AUTH_MODE=token`` sends
no token and is refused ("Authentication required: Missing authentication token").
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

AUTH_MODE = "RAY_AUTH_MODE"
TOKEN = "RAY_AUTH_TOKEN"
TOKEN_PATH = "RAY_AUTH_TOKEN_PATH"


def default_token_path() -> Path:
    """``~/.ray/auth_token``: where ``ray get-auth-token --generate`` writes."""
    return Path.home() / ".ray" / "auth_token"


def token_source(env: Mapping[str, str] | None = None) -> str:
    """Where Ray will read the token from, in Ray's own order of precedence.

    Args:
        env: The environment to look in (default: ``os.environ``).

    Returns:
        ``"RAY_AUTH_TOKEN"`` or a file path.
    """
    env = os.environ if env is None else env
    if env.get(TOKEN):
        return TOKEN
    if env.get(TOKEN_PATH):
        return str(Path(env[TOKEN_PATH]).expanduser())
    return str(default_token_path())


def ensure_token(env: Mapping[str, str] | None = None) -> str:
    """Make sure a token exists where Ray will look; create one (0600) if it does not.

    The token has the format of ``ray get-auth-token --generate``: 32 random bytes, hex.

    Returns:
        The token source (see `token_source`).
    """
    source = token_source(env)
    if source == TOKEN:
        return source
    path = Path(source)
    if path.is_file() and path.read_text().strip():
        return source
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return source


def read_token(env: Mapping[str, str] | None = None) -> str:
    """The token itself (for HTTP clients that set the ``Authorization`` header)."""
    env = os.environ if env is None else env
    source = token_source(env)
    if source == TOKEN:
        return env[TOKEN]
    path = Path(source)
    if not path.is_file():
        raise RuntimeError(
            f"no Ray auth token at {path}: run `maetune cluster start` or `ray get-auth-token --generate`"
        )
    return path.read_text().strip()


def client_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of the environment with token mode on, for ``ray`` CLI clients and Ray processes."""
    out = dict(os.environ if env is None else env)
    out[AUTH_MODE] = "token"
    return out
