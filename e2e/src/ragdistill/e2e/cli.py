"""``ragdistill e2e [overrides]`` and ``ragdistill e2e-compare RUN_DIR...``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ragdistill.common.cli import run_verb
from ragdistill.e2e.config import Swap  # (importing it registers the schema)
from ragdistill.e2e.report import compare_runs, pipeline_label, summary_row, write_report
from ragdistill.e2e.runner import run_pipeline


def run_e2e(cfg: DictConfig, custom: dict[str, Any] | None = None) -> Path:
    """Run one configuration and write its report directory (``swap=matrix``: every run of the swap
    matrix and its table); returns the directory."""
    if cfg.get("swap") == Swap.matrix or str(cfg.get("swap")) == "matrix":
        from ragdistill.e2e.swap import run_matrix

        return run_matrix(cfg, custom)
    result = run_pipeline(cfg, custom)
    slug = "_".join(f"{k[:3]}-{v}" for k, v in result["pipeline"].items())
    out = Path(cfg.out_dir or Path(cfg.paths.work_dir) / "e2e" / "runs" / f"{time.strftime('%Y%m%d-%H%M%S')}_{slug}").resolve()
    report = write_report(out, OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), result, Path(cfg.paths.work_dir).resolve())
    row = summary_row(report)
    print(f"\n[e2e] {pipeline_label(result['pipeline'])}\n" + "\n".join(f"  {k:<18} {v:.4f}" if isinstance(v, float) else f"  {k:<18} {v}" for k, v in row.items()))
    print(f"[e2e] report: {out / 'report.html'}", flush=True)
    return out


def e2e_command(argv: list[str]) -> None:
    run_verb("e2e", run_e2e, argv, "e2e")


e2e_command.description = ("rewrite -> retrieve -> rerank -> generate with each stage teacher/student/export/off; one report per run "
                           "(-m to sweep; swap=matrix: each stage alone swapped to its student/export, quality lost and time saved per stage)")


def compare_command(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="ragdistill e2e-compare", description="Join several e2e run directories into one table (retention and speed-up vs the all-teacher run).")
    p.add_argument("runs", nargs="+", type=Path, help="run directories written by `ragdistill e2e`")
    p.add_argument("--out", type=Path, default=None, help="write comparison.json/.txt and a quality-vs-latency PNG here")
    a = p.parse_args(argv)
    print(compare_runs(a.runs, a.out))


compare_command.description = "join several e2e runs into one table: quality retention and speed-up vs the all-teacher run"
