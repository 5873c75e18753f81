"""ragdistill cost: figures recomputed from real e2e reports (teacher, student and routed runs of the
harness with real encoders) and real teach/train results (the one result contract), never typed in."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from ragdistill.common.config import compose
from ragdistill.common.errors import RagdistillError
from ragdistill.common.ops.cost import compute_costs, cost_command, load_prices, slot_stages
from ragdistill.common.ops.router import RoutedComponent
from ragdistill.common.results import RESULTS, TeachResult, TrainResult
from ragdistill.common.stage import load_stages

# what each installed stage declares (Stage.slot, Stage.teacher_capability): cost and the e2e harness read
# them, with no fallback; the LLM stages ("generate") are the ones priced per token
DECLARED = {"query_rewriter": ("rewriter", "generate"), "embedder": ("embedder", "embed"),
            "reranker": ("reranker", "score"), "generator": ("generator", "generate")}


class _Encoder:
    def __init__(self, name):
        from sentence_transformers import SentenceTransformer

        from ragdistill.common.models import resolve_model

        self.model = SentenceTransformer(resolve_model(name), device="cpu")
        self.model.max_seq_length = 128

    def __call__(self, texts, is_query):
        return self.model.encode(list(texts), normalize_embeddings=True, batch_size=32)


def first_sentence(question, contexts):
    return contexts[0].split(". ")[0] if contexts else ""


def best_sentence(question, contexts):
    """The 'teacher': the context sentence sharing most words with the question."""
    q = set(question.lower().split())
    sents = [s for c in contexts for s in c.split(". ")]
    return max(sents, key=lambda s: len(q & set(s.lower().split()))) if sents else ""


def overlap_confidence(answer, question, contexts):
    q, a = set(question.lower().split()), set(answer.lower().split())
    return len(q & a) / max(len(q), 1)


def _e2e(root, name, pipeline, custom):
    from ragdistill.e2e.cli import run_e2e

    cfg = compose("e2e", [f"paths.work_dir={root / ('idx_' + name)}", "data.max_queries=12", "data.max_docs=80", "max_generate=5",
                          "pipeline.reranker=off", "run.report_to=[]", f"out_dir={root / 'work' / 'e2e' / 'runs' / name}",
                          *[f"pipeline.{k}={v}" for k, v in pipeline.items()]])
    return run_e2e(cfg, custom=custom)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cost")
    mpnet, minilm = _Encoder("mpnet"), _Encoder("minilm-l6")
    routed = RoutedComponent(first_sentence, best_sentence, overlap_confidence, threshold=0.3, signal="question overlap")
    dirs = {
        "teacher": _e2e(root, "teacher", {"embedder": "teacher", "generator": "teacher"}, {"embedder": mpnet, "generator": best_sentence}),
        "student": _e2e(root, "student", {"embedder": "student", "generator": "student"}, {"embedder": minilm, "generator": first_sentence}),
        "routed": _e2e(root, "routed", {"embedder": "student", "generator": "routed"}, {"embedder": minilm, "generator": routed}),
    }
    work = root / "work"
    cfg = compose("e2e", [f"paths.work_dir={work}"])
    from ragdistill.common.cache import LabelCache
    from ragdistill.common.data import load_retrieval

    def timed(result, fn):  # what ops.verbs.run_verb does around a stage's verb: time it, write its result
        t0 = time.perf_counter()
        out = fn()
        result.seconds = time.perf_counter() - t0
        result.write(cfg)
        return out

    texts = [d.full_text for d in list(load_retrieval("squad", max_docs=60).corpus.values())[:16]]
    cache = LabelCache(work / "cache" / "labels.sqlite")
    res = TeachResult("embedder", n_items=len(texts), teacher_calls=len(texts))  # real teacher labelling through the cache
    labels = timed(res, lambda: cache.label(texts, lambda b: list(mpnet(b, False)), "st:mpnet", batch_size=16))
    x = minilm(texts, False)  # a real (tiny) distillation: a least-squares projection

    def fit():
        proj, *_ = np.linalg.lstsq(x, np.stack(labels), rcond=None)
        return proj

    res = TrainResult("embedder", n_items=len(texts), train_steps=1)
    res.details = {"projection": list(timed(res, fit).shape)}
    res.write(cfg)
    answers = [best_sentence(t[:60], [t]) for t in texts]
    res = TeachResult("generator", n_items=len(answers), teacher_calls=len(answers),
                      input_tokens=sum(len(t) for t in texts) // 4, output_tokens=sum(len(a) for a in answers) // 4)
    timed(res, lambda: [best_sentence(t[:60], [t]) for t in texts])
    timed(TrainResult("generator", n_items=len(answers)), lambda: None)
    return work, dirs, routed


def _report(d):
    return json.loads((d / "report.json").read_text())["result"]


def _expected_usd_per_query(result, hourly):
    return sum(v["mean_ms"] / 1000 * hourly / 3600 for k, v in result["latency"].items() if k in ("rewriter", "retrieve", "reranker", "generator"))


def test_costs_are_recomputed_from_the_reports(runs, capsys):
    work, dirs, _ = runs
    prices = load_prices(None, ["hourly_usd=0.5", "train_hourly_usd=2.0", "retrain_every_months=3"])
    costs = compute_costs(work, prices)
    rows = {r["kind"]: r for r in costs["pipelines"]}
    assert set(rows) == {"teacher", "student", "routed"}
    for kind, row in rows.items():
        res = _report(dirs[kind])
        assert row["usd_per_1k_queries"] == pytest.approx(1000 * _expected_usd_per_query(res, 0.5))
        assert row["usd_per_month"] == pytest.approx(row["usd_per_query"] * 1_000_000)
        assert row["quality"] == pytest.approx(res["generation"]["token_f1"])
    # which pipeline is cheaper is a measurement (bench/, the e2e report), not asserted here: on a loaded
    # machine the tiny slice's timings can invert; the test checks the arithmetic on whatever was measured
    # one-off distillation from the teach/train results, break-even from the savings
    cfg = compose("e2e", [f"paths.work_dir={work}"])
    infos = {(s, v): RESULTS[v].read(cfg, s) for s in ("embedder", "generator") for v in ("teach", "train")}
    assert infos[("embedder", "teach")].teacher_calls == 16 and infos[("embedder", "teach")].seconds > 0
    distill = sum(i.seconds * (0.2 if v == "teach" else 2.0) / 3600 for (s, v), i in infos.items())
    st = rows["student"]
    assert st["distillation"]["complete"] and st["distillation"]["usd"] == pytest.approx(distill)
    save = rows["teacher"]["usd_per_query"] - st["usd_per_query"]
    assert st["savings_usd_per_query"] == pytest.approx(save)
    assert st["break_even_queries_per_month"] == (pytest.approx(distill / (save * 3)) if save > 0 else None)
    assert rows["routed"]["compared_with"] == rows["teacher"]["pipeline"]
    # the command prints the table and writes the JSON
    cost_command(["--work-dir", str(work), "--out", str(work / "cost.json"), "hourly_usd=0.5", "train_hourly_usd=2.0", "retrain_every_months=3"])
    out = capsys.readouterr().out
    be = st["break_even_queries_per_month"]
    assert "break-even queries/month" in out and (be is None or f"{be:,.0f}" in out)
    assert json.loads((work / "cost.json").read_text())["pipelines"][0]["usd_per_1k_queries"] > 0


def test_api_priced_teacher_uses_tokens_from_the_report(runs):
    work, dirs, routed = runs
    prices = load_prices(None, ["teacher_pricing=api", "api_usd_per_1m_input_tokens=1.0", "api_usd_per_1m_output_tokens=4.0"])
    with pytest.raises(RagdistillError, match="the routed generator's report has no routing stats"):
        compute_costs(work, prices)
    res = _report(dirs["routed"])  # what the harness will record once it wires RoutedComponent.stats()
    report_file = dirs["routed"] / "report.json"
    rep = json.loads(report_file.read_text())
    rep["result"]["stages"]["generator"]["routing"] = routed.stats()
    report_file.write_text(json.dumps(rep))
    costs = compute_costs(work, prices)
    rows = {r["kind"]: r for r in costs["pipelines"]}
    t = _report(dirs["teacher"])
    ans = list(t["answers"].values())
    tin = np.mean([(len(a["question"]) + len("\n".join(a["contexts"]))) / 4 for a in ans])
    tout = np.mean([len(a["answer"]) / 4 for a in ans])
    api = (tin * 1.0 + tout * 4.0) / 1e6
    assert rows["teacher"]["usd_per_query_by_stage"]["generator"] == pytest.approx(api)
    s = routed.stats()
    assert 0 < s["teacher_fraction"] < 1  # some questions went to the teacher, not all
    ans_r = list(res["answers"].values())
    api_r = (np.mean([(len(a["question"]) + len("\n".join(a["contexts"]))) / 4 for a in ans_r]) * 1.0
             + np.mean([len(a["answer"]) / 4 for a in ans_r]) * 4.0) / 1e6
    expected = s["student_s"] / s["n_calls"] * 0.2 / 3600 + s["teacher_fraction"] * api_r
    assert rows["routed"]["usd_per_query_by_stage"]["generator"] == pytest.approx(expected)
    assert rows["routed"]["routing"]["generator"]["n_teacher_calls"] == s["n_teacher_calls"]


def test_bad_prices_and_missing_reports(tmp_path, capsys):
    with pytest.raises(RagdistillError, match="hourly_usdd"):
        load_prices(None, ["hourly_usdd=1"])
    with pytest.raises(RagdistillError, match="teacher_pricing='gpu': choose measured or api"):
        load_prices(None, ["teacher_pricing=gpu"])
    with pytest.raises(RagdistillError, match=r"e2e/runs: no e2e report; run `ragdistill e2e`"):
        compute_costs(tmp_path, load_prices(None, []))
    with pytest.raises(SystemExit) as e:
        cost_command(["--work-dir", str(tmp_path), "hourly_usd=abc"])
    assert e.value.code == 2 and "hourly_usd" in capsys.readouterr().err


def test_installed_stages_declare_their_slot_and_teacher():
    """cost and the e2e harness know the stages only through these declarations (no built-in list)."""
    stages = load_stages()
    assert {n: (stages[n].slot, stages[n].teacher_capability) for n in DECLARED if n in stages} == {
        n: d for n, d in DECLARED.items() if n in stages}
    assert {slot: s.name for slot, s in slot_stages().items()} == {d[0]: n for n, d in DECLARED.items() if n in stages}


def test_two_stages_in_one_slot_is_an_error():
    from ragdistill.common.stage import Stage

    class A(Stage):
        name, slot = "a", "reranker"

    class B(Stage):
        name, slot = "b", "reranker"

    with pytest.raises(RagdistillError, match=r"stages a and b both fill the pipeline slot 'reranker'"):
        slot_stages({"a": A(), "b": B()})


def test_a_stage_without_results_is_no_break_even(runs):
    """A distilled stage whose teach/train never ran has no results to price: the round is incomplete, not free."""
    from ragdistill.common.ops.cost import distillation_cost

    work, _, _ = runs
    d = distillation_cost(work, ["embedder", "reranker"], load_prices(None, []))
    assert not d["complete"] and d["missing"] == [str(work / "reranker/teach/teach.json"), str(work / "reranker/train/train.json")]
    assert d["by_stage"]["reranker"] == {} and d["by_stage"]["embedder"]["teach"]["teacher_calls"] == 16


def test_stage_verbs_write_the_counts_cost_prices(make_cfg, work_dir):
    """The one-off distillation cost reads teach.json / train.json, which the shared verb runner writes
    for any stage: here the embedder's real teach and train on a tiny slice."""
    from ragdistill.common.ops.cost import distillation_cost
    from ragdistill.common.ops.verbs import stage_verbs
    from ragdistill.common.stage import get_stage

    stage = get_stage("embedder")
    cfg = make_cfg("embedder", ["teacher.model=minilm-l6", "teacher.max_length=32", "student.max_length=32", "data.max_queries=4",
                                "data.max_docs=16", "embedder.train.args.max_steps=1", "embedder.train.args.per_device_train_batch_size=4",
                                "embedder.train.args.eval_steps=1", "embedder.train.val_fraction=0.5", "embedder.train.matryoshka=[384]",
                                "embedder.teach.negatives_per_query=1"])
    verbs = stage_verbs(stage)
    verbs["teach"](cfg)
    verbs["train"](cfg)
    teach, train = TeachResult.read(cfg, "embedder"), TrainResult.read(cfg, "embedder")
    from ragdistill.common.data import load_retrieval

    data = load_retrieval("scifact", 4, 16)  # the slice teach embeds: train and test queries, every document
    n = len({*data.split("train")[0], *data.split("test")[0]}) + len(data.corpus)
    # a fresh cache: every text labelled by the teacher (minilm-l6: no shipped label is keyed by it)
    assert teach.stage == "embedder" and teach.n_items == n and teach.teacher_calls == n and teach.cached == 0
    assert teach.seconds > 0 and train.seconds > 0 and train.train_steps == 1
    prices = load_prices(None, ["train_hourly_usd=2.0"])
    d = distillation_cost(work_dir, ["embedder"], prices)
    assert d["complete"] and d["usd"] == pytest.approx(teach.seconds * prices.label_hourly_usd / 3600 + train.seconds * 2.0 / 3600)
    assert d["by_stage"]["embedder"]["teach"]["teacher_calls"] == teach.teacher_calls
