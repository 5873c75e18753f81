"""Where the project's configs, bundled data, work artifacts and model cache live.

Each location can be moved with an environment variable, so an installed (non-editable) stage
package works outside the repo: ``RAGDISTILL_HOME`` (the folder holding ``conf/`` and ``data/``),
``RAGDISTILL_CONF``, ``RAGDISTILL_DATA``, ``RAGDISTILL_CACHE`` (reassembled models).
"""

from __future__ import annotations

import os
from pathlib import Path


def _looks_like_home(p: Path) -> bool:
    return (p / "conf").is_dir() and (p / "packages").is_dir()


def project_home() -> Path:
    """The ragdistill checkout: ``$RAGDISTILL_HOME``, else the repo this package was installed
    from (editable install), else the nearest parent of the working directory holding ``conf/``."""
    env = os.environ.get("RAGDISTILL_HOME")
    if env:
        return Path(env).resolve()
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for p in [start, *start.parents]:
            if _looks_like_home(p):
                return p
    return Path.cwd().resolve()


def conf_dir() -> Path:
    return Path(os.environ.get("RAGDISTILL_CONF") or project_home() / "conf").resolve()


def data_dir() -> Path:
    return Path(os.environ.get("RAGDISTILL_DATA") or project_home() / "data").resolve()


def model_cache_dir() -> Path:
    """Where split archives and GGUF files are reassembled/converted once."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ragdistill" / "models"
    return Path(os.environ.get("RAGDISTILL_CACHE") or default).resolve()
