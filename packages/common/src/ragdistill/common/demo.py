"""The default main job: every installed stage, teach -> train -> export -> evaluate, on the
bundled data with the bundled models, with the small-run overrides of ``conf/demo.yaml``."""

from __future__ import annotations

import time

from omegaconf import OmegaConf

from ragdistill.common.config import apply_run_settings, compose
from ragdistill.common.errors import RagdistillError
from ragdistill.common.logging import get_logger
from ragdistill.common.paths import conf_dir
from ragdistill.common.stage import VERBS, load_stages

log = get_logger("ragdistill.demo")


def run_demo(extra_overrides: list[str]) -> dict[str, float]:
    """Run the demo; ``extra_overrides`` (e.g. ``paths.work_dir=/tmp/w``) apply to every stage."""
    spec = OmegaConf.load(conf_dir() / "demo.yaml")
    stages = load_stages()
    only = spec.get("stages_order") or list(stages)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    for name in only:
        if name not in stages:
            log.warning("demo: stage %s is not installed, skipped", name)
            continue
        stage = stages[name]
        overrides = [*spec.get("overrides", {}).get(name, []), *extra_overrides]
        cfg = compose(name, overrides)
        apply_run_settings(cfg)
        for verb in spec.get("verbs", VERBS):
            t = time.perf_counter()
            print(f"\n=== ragdistill {name} {verb} {' '.join(overrides)}", flush=True)
            stage.verbs[verb](cfg)
            timings[f"{name}.{verb}"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t_all
    if not timings:
        raise RagdistillError("no stage is installed; install a stage package (make install)")
    print("\n=== demo timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()), flush=True)
    return timings
