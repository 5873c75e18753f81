"""``ragdistill demo``, the default main job: every installed stage, teach -> train -> export ->
evaluate, on the bundled data with the bundled models, with the small-run overrides of
``conf/demo.yaml``, then the e2e harness's pipelines and one comparison table. It lives beside the
harness, the top layer: it runs the stages and the harness, and nothing imports it."""

from __future__ import annotations

import json
import time

from omegaconf import DictConfig, OmegaConf

from ragdistill.common.config import apply_run_settings, compose
from ragdistill.common.errors import RagdistillError
from ragdistill.common.logging import get_logger
from ragdistill.common.ops.verbs import stage_verbs
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
            stage_verbs(stage)[verb](cfg)
            timings[f"{name}.{verb}"] = time.perf_counter() - t
    if not timings:
        raise RagdistillError("no stage is installed; install a stage package (make install)")
    if spec.get("e2e") and spec.e2e.get("runs"):
        t = time.perf_counter()
        _run_e2e(spec.e2e, extra_overrides)
        timings["e2e"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t_all
    print("\n=== demo timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()), flush=True)
    return timings


def _run_e2e(spec: DictConfig, extra_overrides: list[str]) -> None:
    """The e2e harness for each configured pipeline, then one comparison table."""
    from ragdistill.e2e.cli import run_e2e
    from ragdistill.e2e.report import compare_runs

    outs = []
    for run in spec.runs:
        overrides = [*spec.get("overrides", []), *run, *extra_overrides]
        print(f"\n=== ragdistill e2e {' '.join(overrides)}", flush=True)
        outs.append(run_e2e(compose("e2e", overrides)))
    print("\n=== teacher vs student pipelines (retention and speed-up vs the all-teacher run)", flush=True)
    print(compare_runs(outs, outs[-1].parent / "demo-comparison"), flush=True)
    conv = spec.get("conversational")
    for run in conv.runs if conv else []:  # CANARD: history -> rewriter; its report shows raw question vs rewrite
        overrides = [*conv.get("overrides", []), *run, *extra_overrides]
        print(f"\n=== ragdistill e2e {' '.join(overrides)}", flush=True)
        out = run_e2e(compose("e2e", overrides))
        r = json.loads((out / "report.json").read_text())["result"]
        if r.get("retrieval_raw_question"):
            print(f"=== conversational: first-stage NDCG@10 {r['retrieval_raw_question']['ndcg@10']:.4f} with the raw follow-up "
                  f"question, {r['retrieval']['ndcg@10']:.4f} with the rewrite ({r['n_queries']} CANARD test questions)", flush=True)


def demo_command(argv: list[str]) -> None:
    """``ragdistill demo [overrides]``: the overrides (e.g. ``paths.work_dir=/tmp/w``) apply to every stage."""
    from ragdistill.common.logging import setup_logging

    setup_logging()
    run_demo(argv)


demo_command.description = ("the default main job: every installed stage's teach -> train -> export -> evaluate on the "
                            "bundled data with the bundled models (conf/demo.yaml), then the e2e pipelines")
