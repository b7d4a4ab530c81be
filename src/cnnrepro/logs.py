"""Logging set-up for entry points. Library modules only call `logging.getLogger(__name__)`."""

from __future__ import annotations

import logging
import os
import sys

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup(level: str | int | None = None) -> None:
    level = level or os.environ.get("CNNREPRO_LOG_LEVEL", "INFO")
    logging.basicConfig(level=level, format=FORMAT, datefmt="%H:%M:%S", stream=sys.stderr, force=True)
    # These libraries log every HTTP request and database migration at INFO.
    for noisy in ("alembic", "urllib3", "httpx", "mlflow.store.db.utils", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
