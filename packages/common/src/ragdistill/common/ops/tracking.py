"""Experiment tracking: one wandb run per stage verb.

With ``wandb`` in ``run.report_to`` (the default; offline unless ``WANDB_MODE`` says otherwise),
:func:`verb_run` opens a run named ``<stage>-<verb>``, grouped by the work dir (one group per
distillation run, its four verbs and four stages side by side), holding the composed config. The
trainers' own ``WandbCallback`` (transformers, sentence-transformers, TRL) finds that run active and
logs into it instead of opening one of its own; a loop of our own logs with
:func:`ragdistill.common.logging.log_metrics`.
When the verb ends its result goes in too: every count, and for ``evaluate`` each system's metrics
(``<system>/<metric>``, also in the run summary). The run is finished before the next verb starts,
so no run mixes stages and no config key is set twice with two values.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from ragdistill.common.logging import get_logger

log = get_logger(__name__)


def _wanted(cfg: Any) -> bool:
    if "wandb" not in list(cfg.run.get("report_to") or []) or os.environ.get("WANDB_MODE", "").lower() == "disabled":
        return False
    if os.environ.get("RANK", "0") != "0":  # under torchrun/accelerate rank 0 alone reports
        return False
    try:
        import wandb  # noqa: F401
    except ImportError:
        return False
    return True


def result_metrics(result: Any) -> dict[str, float]:
    """A verb result as flat metrics: its counts, and evaluate's ``<system>/<metric>`` figures."""
    d = result.as_dict() if hasattr(result, "as_dict") else dict(result or {})
    out = {k: float(v) for k, v in d.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    for system, metrics in (d.get("results") or {}).items():
        for k, v in (metrics or {}).items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                out[f"{system}/{k}"] = float(v)
    return out


@contextlib.contextmanager
def verb_run(stage: str, verb: str, cfg: Any) -> Iterator[Any]:
    """The wandb run of one verb (None when wandb is not reported to); see the module docstring."""
    if not _wanted(cfg):
        yield None
        return
    import wandb
    from omegaconf import OmegaConf

    from ragdistill.common.paths import work_dir

    wd = work_dir(cfg)
    os.environ.setdefault("WANDB_DIR", str(wd))
    wd.mkdir(parents=True, exist_ok=True)
    run = wandb.init(name=f"{stage}-{verb}", group=str(wd), job_type=verb, tags=[stage, verb], dir=str(wd),
                     config=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),  # type: ignore[arg-type]
                     project=os.environ.get("WANDB_PROJECT", "ragdistill"), reinit="finish_previous",
                     mode=os.environ.get("WANDB_MODE") or "offline")  # WANDB_MODE=online to sync as it runs
    ok = False
    try:
        yield run
        ok = True
    finally:
        run.finish(exit_code=0 if ok else 1)


def log_result(run: Any, result: Any) -> None:
    """A verb's result into its run: the counts and evaluate's figures, logged and in the summary."""
    if run is None:
        return
    metrics = result_metrics(result)
    run.log({f"result/{k}": v for k, v in metrics.items()})
    run.summary.update(metrics)
