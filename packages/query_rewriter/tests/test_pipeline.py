"""teach -> train (a few steps) -> export -> evaluate on a slice, with real models and real ONNX sessions.

The teacher's labels for these records ship in data/labels/query_rewriter*.jsonl (made by this
stage's own ``teach``), so ``teach`` reads them from the cache instead of loading the 0.5B teacher.
The decoder-only path uses the packaged SmolLM2-135M-Instruct; the seq2seq path (what users with a
T5 checkpoint get) is exercised mechanically with a tiny randomly initialised T5 built from a
config (fine inside a test, never in a reported figure) and for real with the packaged MiniLM warm-
started as a one-layer bert2bert, whose decoder optimum exports without a KV cache.
"""

from __future__ import annotations

import pytest

from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import read_jsonl
from ragdistill.query_rewriter.evaluate import evaluate
from ragdistill.query_rewriter.export import export
from ragdistill.query_rewriter.student import StudentRewriter
from ragdistill.query_rewriter.teach import teach
from ragdistill.query_rewriter.train import train

SMALL = [
    "query_rewriter.teach.rewrite_records=6",
    "query_rewriter.teach.expansion_data=[scifact]",
    "query_rewriter.teach.expansion_queries=2",
    "query_rewriter.train.max_steps=1",
    "query_rewriter.train.batch_size=2",
    "query_rewriter.train.max_source_length=96",
    "query_rewriter.train.max_target_length=24",
    "query_rewriter.train.val_records=3",
    "query_rewriter.export.parity_records=2",
    "query_rewriter.evaluate.test_records=3",
    "query_rewriter.evaluate.expansion_queries=2",
    "query_rewriter.evaluate.latency_queries=1",
    "query_rewriter.evaluate.teacher_latency=false",
    "query_rewriter.evaluate.batch_size=4",
    "monitor.baseline_inputs=0",  # export's monitor baseline re-runs the teacher; tested in test_calibrate.py
]


def test_decoder_only_pipeline(make_cfg, work_dir):
    cfg = make_cfg("query_rewriter", [*SMALL, "query_rewriter.export.int8=false",
                                      "query_rewriter.evaluate.systems=[teacher,student_base,student,student_onnx]"])
    stats = teach(cfg)
    f = stats["filters"]
    assert f["rewrite"]["total"] == 6 and f["expansion"]["total"] == 2
    for c in f.values():
        assert c["kept"] + c["empty"] + c["malformed"] + c["echoed"] + c["too_long"] == c["total"]
    rows = read_jsonl(work_dir / "query_rewriter/teach/train.jsonl")
    assert len(rows) == stats["kept"] > 0 and all(r["target"].strip() for r in rows)

    m = train(cfg)
    assert m["kind"] == "causal" and m["steps"] == 1
    assert [h["step"] for h in m["validation"]] == [1] and m["best_checkpoint_step"] == 1
    assert (work_dir / "query_rewriter/train/model/model.safetensors").exists()

    rep = export(cfg)
    assert 0.0 <= rep["onnx"]["parity"] <= 1.0 and rep["inputs"] == 2
    onnx = StudentRewriter.from_onnx(work_dir / "query_rewriter/export/onnx", max_source_length=96)
    assert type(onnx.model).__name__ == "ORTModelForCausalLM"

    res = evaluate(cfg)["results"]
    assert {"teacher", "student_base", "student", "student_onnx"} <= set(res)
    assert res["ref:raw_question"]["recall_lift"] == 0.0
    assert res["student_onnx"]["parity"] == rep["onnx"]["parity"]
    for s in ("teacher", "student_base", "student", "student_onnx"):
        assert 0.0 <= res[s]["recall@100"] <= 1.0 and "scifact_expansion_recall@100" in res[s]
    assert res["student"]["latency_p50_ms"] > 0
    out = read_jsonl(work_dir / "query_rewriter/evaluate/outputs.jsonl")
    assert len(out) == 3 + 2 and all("teacher" in r and r["teacher"] for r in out)


def _tiny_t5(path):
    from transformers import T5Config, T5ForConditionalGeneration

    from ragdistill.common.models import resolve_model
    from ragdistill.query_rewriter.student import load_tokenizer

    tok = load_tokenizer(resolve_model("smollm2-135m-instruct"))
    config = T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=4,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id)
    T5ForConditionalGeneration(config).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_seq2seq_student_trains_exports_and_evaluates(make_cfg, work_dir, tmp_path):
    student = _tiny_t5(tmp_path / "tiny-t5")
    cfg = make_cfg("query_rewriter", [*SMALL, f"student.model={student}", "query_rewriter.train.max_steps=2",
                                      "query_rewriter.evaluate.systems=[student,student_onnx,student_onnx_int8]"])
    teach(cfg)
    m = train(cfg)
    assert m["kind"] == "seq2seq" and m["steps"] == 2
    rep = export(cfg)
    names = sorted(p.name for p in (work_dir / "query_rewriter/export/onnx").glob("*.onnx"))
    assert "encoder_model.onnx" in names and any(n.startswith("decoder") for n in names)
    assert sorted(p.name for p in (work_dir / "query_rewriter/export/onnx_int8").glob("*.onnx")) == names
    assert rep["onnx"]["parity"] == 1.0  # fp32 ONNX greedy decoding equals torch on a tiny model
    assert 0.0 <= rep["onnx_int8"]["parity"] <= 1.0
    onnx = StudentRewriter.from_onnx(work_dir / "query_rewriter/export/onnx")
    assert type(onnx.model).__name__ == "ORTModelForSeq2SeqLM"
    res = evaluate(cfg)["results"]
    assert {"student", "student_onnx", "student_onnx_int8"} <= set(res) and "teacher" not in res


def test_warm_started_bert2bert_student(make_cfg, work_dir):
    from transformers import AutoConfig

    from ragdistill.common.models import resolve_model
    from ragdistill.query_rewriter.student import exports_with_cache

    path = resolve_model("bert2bert:minilm-l6:1")
    config = AutoConfig.from_pretrained(path)
    assert config.model_type == "encoder-decoder" and config.decoder.num_hidden_layers == 1
    assert config.encoder.num_hidden_layers == 6 and config.decoder.add_cross_attention
    assert resolve_model("bert2bert:minilm-l6:1") == path  # built once
    with pytest.raises(RagdistillError, match=r"decoder layers must be 1\.\.6"):
        resolve_model("bert2bert:minilm-l6:9")

    cfg = make_cfg("query_rewriter", [*SMALL, "student.model=bert2bert:minilm-l6:1", "query_rewriter.train.max_steps=2",
                                      "query_rewriter.train.human_records=4", "query_rewriter.export.int8=false",
                                      "query_rewriter.evaluate.systems=[student_base,student_onnx]"])
    teach(cfg)
    m = train(cfg)
    assert m["kind"] == "seq2seq" and m["steps"] == 2 and m["human_records"] == 4
    assert m["targets"] == len(read_jsonl(work_dir / "query_rewriter/teach/train.jsonl")) + 4
    model_dir = work_dir / "query_rewriter/train/model"
    assert not exports_with_cache(model_dir)
    rep = export(cfg)
    names = sorted(p.name for p in (work_dir / "query_rewriter/export/onnx").glob("*.onnx"))
    assert names == ["decoder_model.onnx", "encoder_model.onnx"]  # no past key values for a BERT decoder
    assert rep["onnx"]["parity"] == 1.0
    onnx = StudentRewriter.from_onnx(work_dir / "query_rewriter/export/onnx")
    assert type(onnx.model).__name__ == "ORTModelForSeq2SeqLM" and not onnx.model.use_cache
    res = evaluate(cfg)["results"]
    assert {"student_base", "student_onnx"} <= set(res)


def test_bad_input_is_a_clear_error(make_cfg, tmp_path):
    cfg = make_cfg("query_rewriter", [])
    with pytest.raises(RagdistillError, match="run `ragdistill query_rewriter teach` first"):
        train(cfg)
    with pytest.raises(RagdistillError, match="run `ragdistill query_rewriter train` first"):
        export(cfg)
    with pytest.raises(RagdistillError, match="unknown task"):
        teach(make_cfg("query_rewriter", ["query_rewriter.teach.tasks=[rewrite,summarise]"]))
    folder = tmp_path / "conv"
    folder.mkdir()
    (folder / "train.json").write_text('[{"History": ["T", "S"], "Rewrite": "no question here"}]')
    (folder / "test.json").write_text('[{"History": ["T", "S"], "Question": "q?"}]')
    with pytest.raises(RagdistillError, match=r"train.json: record 0 has no 'Question'"):
        teach(make_cfg("query_rewriter", [f"data.path={folder}", "query_rewriter.teach.tasks=[rewrite]"]))
    with pytest.raises(RagdistillError, match="overlaps the"):
        from ragdistill.query_rewriter.examples import validation_set

        validation_set(make_cfg("query_rewriter", ["query_rewriter.teach.rewrite_records=3430"]))
    from ragdistill.query_rewriter.examples import human_train_examples

    with pytest.raises(RagdistillError, match="human_records=5000: only 2"):
        human_train_examples(make_cfg("query_rewriter", ["query_rewriter.train.human_records=5000"]))
    with pytest.raises(RagdistillError, match="human_mix"):
        c = make_cfg("query_rewriter", ["query_rewriter.train.human_mix=1.5"])
        from ragdistill.common.io import write_jsonl

        write_jsonl(tmp_path / "work/query_rewriter/teach/train.jsonl", [{"id": "a", "task": "rewrite", "source": "s", "question": "q", "target": "t"}])
        train(c)
