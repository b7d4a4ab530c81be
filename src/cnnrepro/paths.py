"""Locations inside a cnnrepro checkout.

Stages run with the repository root as the working directory (DVC runs every `cmd` there), but library code
never relies on that: it calls `repo_root()`, which walks up to the folder that contains `dvc.yaml`.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT_ENV = "CNNREPRO_ROOT"


def repo_root(start: Path | None = None) -> Path:
    """Return the nearest folder at or above `start` (default: the working directory) holding dvc.yaml."""
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV]).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    return here


def main_checkout(root: Path) -> Path:
    """Return the user's checkout when `root` is a DVC experiment's temporary copy of it.

    `dvc exp run --queue/--temp` runs stages in `<checkout>/.dvc/tmp/exps/<name>`. Files that must outlive
    the copy, such as the default MLflow store, belong to the checkout itself.
    """
    parts = root.parts
    for i in range(len(parts) - 3):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return root


def state_dir(root: Path | None = None) -> Path:
    """Return the folder for resumable work, download caches and tracking spools (git- and DVC-ignored)."""
    return main_checkout(root or repo_root()) / ".cnnrepro"
