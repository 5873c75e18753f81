"""teach -> train (a few steps) -> export -> evaluate on a slice, with real models and real ONNX sessions,
through the verbs as the CLI runs them (results and config written by the stage base).

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
from ragdistill.common.io import read_json, read_jsonl, write_jsonl
from ragdistill.common.ops.verbs import stage_verbs
from ragdistill.query_rewriter import stage
from ragdistill.query_rewriter.student import StudentRewriter

pytestmark = pytest.mark.usefixtures("one_thread")

VERBS = stage_verbs(stage)
SMALL = [
    "query_rewriter.teach.rewrite_records=6",
    "query_rewriter.teach.expansion_data=[scifact]",
    "query_rewriter.teach.expansion_queries=2",
    "query_rewriter.train.args.max_steps=1",
    "query_rewriter.train.args.per_device_train_batch_size=2",
    "query_rewriter.train.max_source_length=96",
    "query_rewriter.train.max_target_length=24",
    "query_rewriter.train.val_records=3",
    "query_rewriter.export.parity_records=2",
    "query_rewriter.evaluate.test_records=3",
    "query_rewriter.evaluate.expansion_queries=2",
    "query_rewriter.evaluate.latency_queries=1",
    "query_rewriter.evaluate.teacher_latency=false",
    "query_rewriter.evaluate.batch_size=4",
    "monitor.baseline_inputs=0",  # export's monitor baseline: tested in test_calibrate.py
]


def _mismatches_agree(res, name: str, n: int) -> bool:
    """A variant's parity is the share of the n inputs not listed as mismatches (n <= 5: all are listed)."""
    return res.variants[name].parity == (n - len(res.details["mismatches"][name])) / n


def test_decoder_only_pipeline(make_cfg, work_dir):
    cfg = make_cfg("query_rewriter", [*SMALL, "query_rewriter.export.int8=false",
                                      "query_rewriter.evaluate.systems=[teacher,student_base,student,student_onnx]"])
    taught = VERBS["teach"](cfg)
    f = taught.details["filters"]
    assert f["rewrite"]["total"] == 6 and f["expansion"]["total"] == 2 and taught.n_items == 8
    for c in f.values():
        assert c["kept"] + c["empty"] + c["malformed"] + c["echoed"] + c["too_long"] == c["total"]
    assert taught.cached == 8 and taught.teacher_calls == 0  # the shipped labels: no teacher load
    rows = read_jsonl(work_dir / "query_rewriter/teach/train.jsonl")
    assert len(rows) == taught.kept == f["rewrite"]["kept"] + f["expansion"]["kept"] > 0 and all(r["target"].strip() for r in rows)
    assert read_json(work_dir / "query_rewriter/teach/teach.json")["kept"] == taught.kept
    assert (work_dir / "query_rewriter/teach/config.yaml").is_file()

    trained = VERBS["train"](cfg)
    m = trained.details
    assert m["kind"] == "causal" and trained.train_steps == 1 and trained.n_items == len(rows)
    assert [h["step"] for h in m["validation"]] == [1] and m["best_checkpoint_step"] == 1
    assert trained.student == str(work_dir / "query_rewriter/train/student")
    assert (work_dir / "query_rewriter/train/student/model.safetensors").exists()

    rep = VERBS["export"](cfg)
    assert rep.n_items == 2 and rep.model == str(work_dir / "query_rewriter/export/model") and list(rep.variants) == ["onnx"]
    assert rep.variants["onnx"].parity == 1.0 and _mismatches_agree(rep, "onnx", 2)  # fp32 ONNX greedy decoding equals torch
    assert rep.details["gate"] == {"min_parity": 0.9, "min_parity_quantized": 0.4, "failed": []}
    onnx = StudentRewriter.from_onnx(work_dir / "query_rewriter/export/model", max_source_length=96)
    assert type(onnx.model).__name__ == "ORTModelForCausalLM"

    res = VERBS["evaluate"](cfg).results
    assert {"teacher", "student_base", "student", "student_onnx"} <= set(res)
    assert res["ref:raw_question"]["recall_lift"] == 0.0
    assert res["student_onnx"]["parity"] == 1.0
    for s in ("teacher", "student_base", "student", "student_onnx"):
        assert res[s]["recall_lift"] == pytest.approx((res[s]["recall_lift@10"] + res[s]["recall_lift@100"]) / 2)
        assert "scifact_expansion_recall@100" in res[s]
    # identical greedy outputs (parity 1.0) score identically
    assert all(res["student_onnx"][k] == res["student"][k] for k in ("recall@10", "recall@100", "ndcg@10", "bleu"))
    assert res["student"]["latency_p50_ms"] > 0
    assert read_json(work_dir / "query_rewriter/evaluate/results.json")["results"]["teacher"] == res["teacher"]
    out = read_jsonl(work_dir / "query_rewriter/evaluate/outputs.jsonl")
    assert len(out) == 3 + 2 and all("teacher" in r and r["teacher"] for r in out)

    # the export travels: its prompt.json and model card, and the README's load snippet runs on it as written
    import re

    from ragdistill.common.paths import project_home

    model = work_dir / "query_rewriter/export/model"
    assert read_json(model / "prompt.json")["system"]["rewrite"] and "| metric | teacher | student before distillation" in (
        model / "README.md").read_text()
    readme = (project_home() / "README.md").read_text(encoding="utf-8")
    code = re.search(r"<!-- load: query_rewriter -->\s*```python\n(.*?)```", readme, flags=re.S).group(1)
    scope: dict = {}
    exec(code.replace('"work/', f'"{work_dir}/'), scope)
    assert isinstance(scope["rewrite"], str) and scope["messages"][0]["content"] == read_json(model / "prompt.json")["system"]["rewrite"]


def _tiny_t5(path):
    from transformers import T5Config, T5ForConditionalGeneration, set_seed

    from ragdistill.common.models import resolve_model
    from ragdistill.query_rewriter.student import load_tokenizer

    tok = load_tokenizer(resolve_model("smollm2-135m-instruct"))
    config = T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=4,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id)
    set_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_seq2seq_student_trains_exports_and_evaluates(make_cfg, work_dir, tmp_path):
    student = _tiny_t5(tmp_path / "tiny-t5")
    # a random tiny model's int8 argmax is noise: its int8 copy is not held to a parity bar here
    cfg = make_cfg("query_rewriter", [*SMALL, f"student.model={student}", "query_rewriter.train.args.max_steps=2",
                                      "query_rewriter.export.min_parity_quantized=0",
                                      "query_rewriter.evaluate.systems=[student,student_onnx,student_onnx_int8]"])
    VERBS["teach"](cfg)
    trained = VERBS["train"](cfg)
    assert trained.details["kind"] == "seq2seq" and trained.train_steps == 2
    rep = VERBS["export"](cfg)
    names = sorted(p.name for p in (work_dir / "query_rewriter/export/model").glob("*.onnx"))
    assert "encoder_model.onnx" in names and any(n.startswith("decoder") for n in names)
    assert sorted(p.name for p in (work_dir / "query_rewriter/export/model_int8").glob("*.onnx")) == names
    assert rep.variants["onnx"].parity == 1.0  # fp32 ONNX greedy decoding equals torch on a tiny model
    assert rep.variants["onnx_int8"].quantized and not rep.variants["onnx"].quantized
    assert _mismatches_agree(rep, "onnx", 2) and _mismatches_agree(rep, "onnx_int8", 2)
    onnx = StudentRewriter.from_onnx(work_dir / "query_rewriter/export/model")
    assert type(onnx.model).__name__ == "ORTModelForSeq2SeqLM"
    res = VERBS["evaluate"](cfg).results
    assert {"student", "student_onnx", "student_onnx_int8"} <= set(res) and "teacher" not in res
    assert res["student_onnx_int8"]["parity"] == rep.variants["onnx_int8"].parity


def test_export_gate_fails_a_variant_below_its_bar(make_cfg, work_dir, tmp_path):
    """The one export rule: a bar no variant can reach fails the export, naming the variant."""
    student = _tiny_t5(tmp_path / "tiny-t5")
    cfg = make_cfg("query_rewriter", [*SMALL, f"student.model={student}", "query_rewriter.export.int8=false",
                                      "query_rewriter.export.min_parity=1.01"])
    VERBS["teach"](cfg)
    VERBS["train"](cfg)
    with pytest.raises(RagdistillError, match=r"query_rewriter export: parity below the bar for onnx identical greedy outputs 1\.0000 < 1\.01"):
        VERBS["export"](cfg)
    assert not (work_dir / "query_rewriter/export/export.json").exists()  # no result for a failed export
    assert (work_dir / "query_rewriter/export/model/config.json").is_file()  # the files stay for inspection


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

    cfg = make_cfg("query_rewriter", [*SMALL, "student.model=bert2bert:minilm-l6:1", "query_rewriter.train.args.max_steps=2",
                                      "query_rewriter.train.human_records=4", "query_rewriter.export.int8=false",
                                      "query_rewriter.evaluate.systems=[student_base,student_onnx]"])
    VERBS["teach"](cfg)
    trained = VERBS["train"](cfg)
    assert trained.details["kind"] == "seq2seq" and trained.train_steps == 2 and trained.details["human_records"] == 4
    assert trained.n_items == len(read_jsonl(work_dir / "query_rewriter/teach/train.jsonl")) + 4
    model_dir = work_dir / "query_rewriter/train/student"
    assert not exports_with_cache(model_dir)
    rep = VERBS["export"](cfg)
    names = sorted(p.name for p in (work_dir / "query_rewriter/export/model").glob("*.onnx"))
    assert names == ["decoder_model.onnx", "encoder_model.onnx"]  # no past key values for a BERT decoder
    assert rep.variants["onnx"].parity == 1.0
    onnx = StudentRewriter.from_onnx(work_dir / "query_rewriter/export/model")
    assert type(onnx.model).__name__ == "ORTModelForSeq2SeqLM" and not onnx.model.use_cache
    res = VERBS["evaluate"](cfg).results
    assert {"student_base", "student_onnx"} <= set(res)


def test_train_args_are_transformers_own(make_cfg, work_dir):
    """``train.args`` reach TrainingArguments as they are: an unknown key or one the stage sets is a clear error."""
    for key, match in [("+query_rewriter.train.args.learning_rat=1e-4", r"learning_rat \(did you mean learning_rate\?\) is not an argument"),
                       ("+query_rewriter.train.args.output_dir=/tmp/x", r"output_dir is set by the stage itself")]:
        cfg = make_cfg("query_rewriter", [*SMALL, key])
        write_jsonl(work_dir / "query_rewriter/teach/train.jsonl",
                    [{"id": "a", "task": "rewrite", "source": "Follow-up question: q?", "question": "q?", "target": "t?"}])
        with pytest.raises(RagdistillError, match=match):
            VERBS["train"](cfg)


def test_bad_input_is_a_clear_error(make_cfg, tmp_path):
    cfg = make_cfg("query_rewriter", [])
    with pytest.raises(RagdistillError, match="run `ragdistill query_rewriter teach` first"):
        VERBS["train"](cfg)
    with pytest.raises(RagdistillError, match="run `ragdistill query_rewriter train` first"):
        VERBS["export"](cfg)
    with pytest.raises(RagdistillError, match=r"Invalid value 'summarise', expected one of \[rewrite, expansion\]"):
        make_cfg("query_rewriter", ["query_rewriter.teach.tasks=[rewrite,summarise]"])
    with pytest.raises(RagdistillError, match=r"Invalid value 'student_gguf'"):
        make_cfg("query_rewriter", ["query_rewriter.evaluate.systems=[student_gguf]"])
    folder = tmp_path / "conv"
    folder.mkdir()
    (folder / "train.json").write_text('[{"History": ["T", "S"], "Rewrite": "no question here"}]')
    (folder / "test.json").write_text('[{"History": ["T", "S"], "Question": "q?"}]')
    with pytest.raises(RagdistillError, match=r"train.json: record 0 has no 'Question'"):
        VERBS["teach"](make_cfg("query_rewriter", [f"data.path={folder}", "query_rewriter.teach.tasks=[rewrite]"]))
    with pytest.raises(RagdistillError, match="overlaps the"):
        from ragdistill.query_rewriter.examples import validation_set

        validation_set(make_cfg("query_rewriter", ["query_rewriter.teach.rewrite_records=3430"]))
    from ragdistill.query_rewriter.examples import human_train_examples

    with pytest.raises(RagdistillError, match="human_records=5000: only 2"):
        human_train_examples(make_cfg("query_rewriter", ["query_rewriter.train.human_records=5000"]))
    with pytest.raises(RagdistillError, match="human_mix"):
        c = make_cfg("query_rewriter", ["query_rewriter.train.human_mix=1.5"])
        write_jsonl(tmp_path / "work/query_rewriter/teach/train.jsonl", [{"id": "a", "task": "rewrite", "source": "s", "question": "q", "target": "t"}])
        VERBS["train"](c)
