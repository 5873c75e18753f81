"""Where the project's configs, bundled data, work artifacts and model cache live.

Each location can be moved with an environment variable, so an installed (non-editable) stage
package works outside the repo: ``RAGDISTILL_HOME`` (the folder holding ``conf/`` and ``data/``),
``RAGDISTILL_CONF``, ``RAGDISTILL_DATA``, ``RAGDISTILL_CACHE`` (reassembled models).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


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


# ---- one artifact layout for every stage: <work_dir>/<stage>/<verb>/ holds what the verb writes
# (teach.json, train.json + student/, export.json + model/, results.json), read by the next verb


def work_dir(cfg: Any) -> Path:
    return Path(cfg.paths.work_dir).resolve()


def stage_dir(cfg: Any, stage: str, verb: str) -> Path:
    """``<work_dir>/<stage>/<verb>``: where a verb writes and the next verb reads."""
    return work_dir(cfg) / stage / verb


def student_dir(cfg: Any, stage: str) -> Path:
    """``<work_dir>/<stage>/train/student``: the distilled student ``train`` keeps."""
    return stage_dir(cfg, stage, "train") / "student"


def export_dir(cfg: Any, stage: str) -> Path:
    """``<work_dir>/<stage>/export/model``: the production artifact ``export`` writes."""
    return stage_dir(cfg, stage, "export") / "model"


def queue_path(cfg: Any, stage: str) -> Path:
    """``<work_dir>/<stage>/queue.jsonl``: the stage's failure queue."""
    return work_dir(cfg) / stage / "queue.jsonl"


def rounds_dir(cfg: Any, stage: str) -> Path:
    """``<work_dir>/<stage>/rounds``: one numbered folder per kept distillation round."""
    return work_dir(cfg) / stage / "rounds"
