"""The table of an embedder training sweep: one row per multirun job, its settings and validation NDCG@10.

    .venv/bin/python bench/embedder_sweep.py <sweep dir> [<sweep dir> ...]

Reads every ``<sweep dir>/*/embedder/train/train.json`` (``ragdistill embedder train -m ...
paths.work_dir=<sweep dir>/<name from the swept keys>``: one work dir per job) with the
``config.yaml`` beside it, and prints a markdown table: the settings that differ between jobs, the
validation NDCG@10 before training and after each evaluation (epoch), the best, and the wall time.
Validation is the 10% of *training* queries train holds out (``embedder.train.val_fraction``); the
test split is never looked at, so the table can choose defaults.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def main(argv: list[str]) -> int:
    from omegaconf import OmegaConf

    from ragdistill.common.io import read_json

    if not argv:
        print(__doc__)
        return 2
    rows = []
    for sweep in argv:
        for f in sorted(Path(sweep).glob("*/embedder/train/train.json")):
            result = read_json(f)
            cfg = _flat(OmegaConf.to_container(OmegaConf.load(f.parent / "config.yaml"), resolve=True)["embedder"])
            rows.append((f.parent.parent.parent.name, cfg, result))
    if not rows:
        print(f"no */embedder/train/train.json under {', '.join(argv)}")
        return 1
    keys = ["teach.negatives_per_query", "train.negatives_per_query", "train.mse_corpus_docs", "train.losses",
            "train.loss_weights.mse", "train.loss_weights.mnrl", "train.loss_weights.margin_mse", "train.margin_teacher",
            "train.args.learning_rate", "train.args.num_train_epochs", "train.max_length"]
    varying = [k for k in keys if len({str(c.get(k)) for _, c, _ in rows}) > 1] or ["train.args.learning_rate"]
    n_evals = max(len(r["details"]["history"]) for _, _, r in rows)
    head = ["job", *varying, "rows", "steps", "val NDCG@10 before", *[f"after eval {i}" for i in range(1, n_evals)], "best", "minutes"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, cfg, r in rows:
        d = r["details"]
        hist = [f"{h['val_ndcg@10']:.4f}" for h in d["history"]]
        hist += ["-"] * (n_evals - len(hist))
        best = d.get("best") or {}
        values = [str(cfg.get(k)).replace("'", "") for k in varying]
        print("| " + " | ".join([name, *values, str(d["n_train_rows"] + d.get("n_mse_texts", 0)), str(r["train_steps"]), *hist,
                                  f"**{best.get('val_ndcg@10', float('nan')):.4f}** (step {best.get('step', '-')})",
                                  f"{r['seconds'] / 60:.0f}"]) + " |")
    n_val = {r["details"]["n_val_queries"] for _, _, r in rows}
    print(f"\nvalidation: {', '.join(map(str, sorted(n_val)))} held-out training queries, ranked over "
          f"embedder.train.val_max_docs documents (their positives, mined negatives, random others)")
    return 0


if __name__ == "__main__":
    from ragdistill.common.cli import run_script

    sys.exit(run_script(main, sys.argv[1:]))
