"""Container entrypoint: credentials mounted as files become the settings they name, then
the command runs (`secret_env.py parley worker dialogue ...`).

Kubernetes mounts each key of a Secret as a file; Parley's settings read the environment.
For every regular file directly in `PARLEY_SECRETS_DIR` (default `/run/secrets/parley`; a
`:`-separated list is allowed) whose name is a valid variable name (`DATABASE_URL`,
`PARLEY_GATEWAY_JWT_SECRET`, ...), the variable is set to the file's content, trailing
newline removed, unless the environment already sets it. Dot-files (the `..data` links of a
Secret volume) and other names are ignored. The values never appear in the Pod spec; they live
in this process's environment only (readable by the same user, as with any process).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import MutableMapping
from pathlib import Path

DEFAULT_DIR = "/run/secrets/parley"
NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def load_secret_files(env: MutableMapping[str, str]) -> list[str]:
    """Set `env[NAME]` from each `<dir>/NAME`; returns the names set (sorted)."""
    loaded: list[str] = []
    for folder in env.get("PARLEY_SECRETS_DIR", DEFAULT_DIR).split(":"):
        root = Path(folder)
        if not folder or not root.is_dir():
            continue
        for path in sorted(root.iterdir()):
            if NAME.match(path.name) and path.is_file() and path.name not in env:
                env[path.name] = path.read_text(encoding="utf-8").rstrip("\r\n")
                loaded.append(path.name)
    return sorted(loaded)


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: secret_env.py COMMAND [ARG...]", file=sys.stderr)
        return 2
    names = load_secret_files(os.environ)
    if names:
        # Names only, never values: the log says which credentials came from files.
        print(f"secret_env: set {', '.join(names)} from files", file=sys.stderr, flush=True)
    os.execvp(argv[0], argv)  # replaces this process: signals reach the worker directly


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
