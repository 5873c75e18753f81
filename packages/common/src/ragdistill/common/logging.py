"""One logger setup for every stage; wandb defaults to offline so no run ever phones home."""

from __future__ import annotations

import logging
import os

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def setup_logging(level: str = "INFO") -> None:
    """Configure the root logger once; quiet the chatty libraries."""
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), format=_FORMAT, datefmt="%H:%M:%S")
    for noisy in ("httpx", "urllib3", "filelock", "datasets", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def offline_defaults() -> None:
    """Defaults for this project's environment, each overridable by the user's own variable:
    wandb logs offline and tokenizers do not fork-warn (HF_HUB_OFFLINE is
    left to the user: the Makefile sets it here, users with a network load hub ids)."""
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
