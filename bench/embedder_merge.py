"""How far back toward its start a distilled embedder should go: NDCG@10 per ``base_weight``, in domain and unseen.

    .venv/bin/python bench/embedder_merge.py <trained student dir> [--weights 0,0.5,0.7] [--data scifact,squad] [overrides]

For each share ``w`` the trained student (``<work dir>/embedder/train/student``, or ``student_distilled`` beside it
where train already merged with ``base_weight > 0``) is merged with the
undistilled student as ``embedder.train.base_weight=w`` would save it (WiSE-FT, ``merge_with_base``)
and scored on every data set's full test split: NDCG@10 at full size and at 96 dims, exact cosine
top-100 through pytrec_eval, the undistilled student first (``--teacher``: the teacher before it). No training: one share costs one
encoding of each corpus (about 7 minutes for SciFact + SQuAD on 2 CPU cores), so the share can be
chosen on data the student never saw before a training run bakes it in. Trailing Hydra overrides
apply to every data set's config (``data.max_queries=20 data.max_docs=200`` scores a slice).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

DIMS = 96


def _score(model: Any, sets: dict[str, Any]) -> dict[str, tuple[float, float]]:
    from ragdistill.embedder.evaluate import retrieval_metrics

    out = {}
    for name, (qids, q_texts, doc_ids, d_texts, qrels) in sets.items():
        d = model.encode(d_texts, batch_size=32, normalize_embeddings=True, show_progress_bar=True)
        q = model.encode(q_texts, batch_size=32, normalize_embeddings=True)
        m = retrieval_metrics(d, doc_ids, q, qids, qrels, [DIMS])
        out[name] = (m["ndcg@10"], m[f"ndcg@10 d={DIMS}"])
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("student", help="a trained student folder (<work dir>/embedder/train/student, or train/student_distilled after a merge)")
    p.add_argument("--weights", default="0,0.5,0.7", help="undistilled shares to score, comma-separated, each in [0, 1]")
    p.add_argument("--data", default="scifact,squad", help="data configs whose full test split is scored")
    p.add_argument("--base", default=None, help="the undistilled student (default: the config's student.model)")
    p.add_argument("--teacher", action="store_true", help="score the config's teacher first (the bar; its 96-dim column is a "
                   "plain truncation, the teacher is not Matryoshka-trained)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for every data set's config, e.g. data.max_queries=20")
    a = p.parse_intermixed_args(argv)

    from pathlib import Path

    from ragdistill.common.config import compose
    from ragdistill.common.errors import RagdistillError
    from ragdistill.common.training import check_base_weight, merge_with_base
    from ragdistill.embedder.data import load_data
    from ragdistill.embedder.models import load_sentence_transformer

    if not (Path(a.student) / "modules.json").is_file():
        raise RagdistillError(f"{a.student}: not a sentence-transformers folder; give <work dir>/embedder/train/student")
    try:
        weights = [float(w) for w in a.weights.split(",")]
    except ValueError:
        raise RagdistillError(f"--weights {a.weights}: give comma-separated numbers in [0, 1], e.g. 0,0.5,0.7") from None
    for w in weights:
        check_base_weight(w, "--weights")
    sets: dict[str, Any] = {}
    for name in a.data.split(","):
        cfg = compose("embedder", [f"data={name}", "run.report_to=[]", *a.overrides])
        data = load_data(cfg)
        queries, qrels = data.split(cfg.data.test_split)
        sets[name] = (list(queries), list(queries.values()), list(data.corpus), [d.full_text for d in data.corpus.values()], qrels)
        print(f"{name}: {len(queries)} test queries over {len(data.corpus)} documents", flush=True)
    max_length, base_name = cfg.student.max_length, a.base or cfg.student.model  # the student config is the same for every data set
    base = load_sentence_transformer(base_name, max_length=max_length)
    names = list(sets)
    print("| student | " + " | ".join(f"{n} NDCG@10 | {n} at {DIMS} dims" for n in names) + " |")
    print("|---|" + "---|---|" * len(names), flush=True)

    def row(label: str, r: dict[str, tuple[float, float]]) -> None:
        print(f"| {label} | " + " | ".join(f"{r[n][0]:.4f} | {r[n][1]:.4f}" for n in names) + " |", flush=True)

    if a.teacher:
        teacher = load_sentence_transformer(cfg.teacher.model, max_length=cfg.teacher.max_length)
        row(f"teacher ({cfg.teacher.model})", _score(teacher, sets))
        del teacher
    row(f"undistilled ({base_name})", _score(base, sets))
    for w in weights:
        model = load_sentence_transformer(a.student, max_length=max_length)
        merge_with_base(model, base, w, "--weights")
        row(f"base_weight={w:g}", _score(model, sets))
    return 0


if __name__ == "__main__":
    from ragdistill.common.cli import run_script

    sys.exit(run_script(main, sys.argv[1:]))
