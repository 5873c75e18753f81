"""ragdistill monitor: bad logs name the line, the drift check, and real MiniLM (student) vs MPNet
(teacher) divergence that flags off-domain inputs (CANARD questions) against SciFact in-distribution."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ragdistill.common.errors import RagdistillError
from ragdistill.common.ops.monitor import (
    DIVERGENCES,
    check,
    divergence_fn,
    measure,
    monitor_command,
    read_log,
    register_divergence,
)


def _write_log(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_log_errors_name_the_line(tmp_path):
    bad = tmp_path / "live.jsonl"
    bad.write_text('{"query": "a"}\n\n{"query": "b"\n')
    with pytest.raises(RagdistillError, match=r"live.jsonl:3: malformed JSON line"):
        read_log(bad, "embedder")
    _write_log(bad, [{"query": "a"}, {"text": "b"}])
    with pytest.raises(RagdistillError, match=r"live.jsonl:2: a embedder log line needs 'query'; missing query"):
        read_log(bad, "embedder")
    _write_log(bad, [{"query": "q", "docs": ["a"]}, ["not", "an", "object"]])
    with pytest.raises(RagdistillError, match=r"live.jsonl:2: expected a JSON object"):
        read_log(bad, "reranker")
    with pytest.raises(RagdistillError, match="no divergence function for stage 'nope'"):
        read_log(bad, "nope")
    # the command reports it before loading any model, exit status 2
    with pytest.raises(SystemExit) as e:
        monitor_command(["embedder", "--log", str(bad)])
    assert e.value.code == 2
    rows = [{"query": f"q{i}"} for i in range(50)]
    assert len(read_log(_write_log(bad, rows), "embedder", sample=10)) == 10


def test_drift_check_and_text_stages():
    base = {"divergence": 0.30}
    drifted, msg = check("embedder", {"divergence": 0.45, "top10_overlap": 0.55, "n": 40}, base, 0.1)
    assert drifted and "DRIFT" in msg and "0.4500 exceeds the baseline 0.3000 + margin 0.1000" in msg
    assert "ragdistill embedder teach data.extra=queue" in msg
    assert not check("embedder", {"divergence": 0.35, "n": 40}, base, 0.1)[0]
    # generator / rewriter / reranker plug in through the same registry, from the pipeline contracts
    gen = measure("generator", [{"question": "q", "contexts": ["Paris is big."], "answer": "Paris is big"}],
                  student=None, teacher=lambda q, c: c[0])
    assert gen["rouge_l_agreement"] == pytest.approx(1.0) and gen["divergence"] == pytest.approx(0.0)
    rr = measure("reranker", [{"query": "q", "docs": ["a", "b", "c"]}], student=lambda q, d: [3, 2, 1], teacher=lambda q, d: [1, 2, 3])
    assert rr["kendall_tau"] == pytest.approx(-1.0) and rr["divergence"] == pytest.approx(1.0)
    rw = measure("query_rewriter", [{"history": ["who wrote Hamlet"], "question": "when?"}],
                 student=lambda h, q: "when did Shakespeare write Hamlet", teacher=lambda h, q: "when was Hamlet written")
    assert 0 < rw["divergence"] < 1
    register_divergence("toy", lambda s, t, ctx: (lambda recs: {"divergence": 0.5}), ("x",))
    assert measure("toy", [{"x": 1}], None, None) == {"divergence": 0.5, "n": 1}
    del DIVERGENCES["toy"]


class _ST:
    """A SentenceTransformer as a pipeline Encoder."""

    def __init__(self, name):
        from sentence_transformers import SentenceTransformer

        from ragdistill.common.models import resolve_model

        self.model = SentenceTransformer(resolve_model(name), device="cpu")
        self.model.max_seq_length = 128

    def __call__(self, texts, is_query):
        return self.model.encode(list(texts), normalize_embeddings=True, batch_size=32)


def test_real_divergence_flags_off_domain_inputs(tmp_path):
    from ragdistill.common.data import load_retrieval, load_rewrites

    data = load_retrieval("scifact")
    queries, _ = data.split("test")
    qids = sorted(queries)
    held_out = [{"query": queries[q]} for q in qids[:40]]
    live_in = [{"query": queries[q]} for q in qids[40:80]]
    canard = load_rewrites("canard")["test"]
    live_shift = [{"query": r.question} for r in canard[:40]]
    ids = sorted(data.corpus)
    np.random.default_rng(0).shuffle(ids)
    corpus = [data.corpus[d].full_text for d in ids[:120]]

    fn = divergence_fn("embedder", _ST("minilm-l6"), _ST("mpnet"), {"corpus": corpus})
    base = measure("embedder", held_out, None, None, fn=fn)
    same = measure("embedder", live_in, None, None, fn=fn)
    shift = measure("embedder", live_shift, None, None, fn=fn)
    print(f"baseline {base}\nin-distribution {same}\nshifted (CANARD) {shift}")
    assert "cosine" not in base  # 384 vs 768: no shared space, the doc-score profiles are compared instead
    margin = 0.1
    assert not check("embedder", same, base, margin)[0]
    drifted, msg = check("embedder", shift, base, margin)
    assert drifted, msg
    assert shift["top10_overlap"] < min(base["top10_overlap"], same["top10_overlap"])  # the retrievals part ways too


def test_monitor_command_through_the_stage_components(tmp_path, work_dir):
    """The CLI: baseline from a held-out log, then a check that passes and one that flags drift."""
    from ragdistill.common.data import load_retrieval, load_rewrites

    queries, _ = load_retrieval("scifact").split("test")
    qids = sorted(queries)
    held = _write_log(tmp_path / "held_out.jsonl", [{"query": queries[q]} for q in qids[:12]])
    shifted = _write_log(tmp_path / "shifted.jsonl", [{"query": r.question} for r in load_rewrites("canard")["test"][:12]])
    common = ["--student", "student_base", "--corpus-docs", "40", f"paths.work_dir={work_dir}", "run.report_to=[]",
              "teacher.max_length=128", "student.max_length=128"]
    monitor_command(["embedder", "--log", str(held), "--write-baseline", *common])
    baseline = json.loads((work_dir / "embedder" / "export" / "monitor_baseline.json").read_text())
    assert baseline["stage"] == "embedder" and baseline["metrics"]["n"] == 12 and baseline["context"]["n_docs"] == 40
    monitor_command(["embedder", "--log", str(held), "--margin", "0.05", "--out", str(tmp_path / "ok.json"), *common])  # exit 0
    assert json.loads((tmp_path / "ok.json").read_text())["metrics"]["divergence"] == pytest.approx(baseline["divergence"], abs=1e-4)
    with pytest.raises(SystemExit) as e:
        monitor_command(["embedder", "--log", str(shifted), "--margin", "0.05", *common])
    assert e.value.code == 1
