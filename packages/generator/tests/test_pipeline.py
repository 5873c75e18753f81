"""teach -> filter -> train (LoRA, a few steps) -> merge -> export -> evaluate on a small slice, with
real models (SmolLM2-135M stands in as the teacher so the test stays fast), run the way the CLI runs
them (the stage's verbs through ``stage_verbs``: results and configs written beside the artifacts);
the shipped teacher labels, which must keep hitting the cache; and the teacher paths that must fail
softly or loudly: malformed JSON from an OpenAI-compatible endpoint, GKD across tokenizers."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from ragdistill.common.cache import label_key
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import read_json, read_jsonl
from ragdistill.common.ops.verbs import stage_verbs
from ragdistill.common.paths import project_home
from ragdistill.generator import stage
from ragdistill.generator.train import read_chat_jsonl

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = [
    "teacher.model=smollm2-135m-instruct", "teacher.max_new_tokens=12", "generator.student_max_new_tokens=12",
    "generator.teach.shipped_labels=[]", "generator.teach.max_train_questions=4", "generator.retrieval.top_k=2",
    "generator.prompt.max_context_chars=400", "generator.teach.filters.min_grounding=0.0", "generator.train.args.max_steps=2",
    "generator.train.args.per_device_train_batch_size=2", "generator.train.args.gradient_accumulation_steps=1", "generator.train.args.max_length=384", "generator.train.lora.r=4",
    "generator.export.smoke_questions=2", "generator.evaluate.max_test_questions=3", "generator.evaluate.latency_items=1",
    "generator.evaluate.teacher_latency_items=1", "run.torch_threads=1", "monitor.baseline_inputs=1",
]
VERBS = stage_verbs(stage)


def test_teach_train_merge_export_evaluate(make_cfg, work_dir):
    cfg = make_cfg("generator", [*SMALL, "generator.export.onnx=false"])  # the ONNX export: test_onnx_export_... below
    taught = VERBS["teach"](cfg)
    d = taught.details
    assert taught.n_items == d["total"] == 4 and taught.kept + d["dropped"] == 4
    assert (taught.teacher_calls, taught.cached) == (4, 0)  # no shipped labels: every answer is made here
    assert set(d["filters"]) == {"format", "length", "grounding"}
    assert d["teacher"] == "gen:causal_lm:smollm2-135m-instruct:T=0.0:max=12"
    assert read_json(work_dir / "generator/teach/teach.json")["kept"] == taught.kept
    rows = read_jsonl(work_dir / "generator/teach/train.jsonl")
    assert len(rows) == taught.kept > 0
    assert [m["role"] for m in rows[0]["messages"]] == ["system", "user", "assistant"]
    assert "Question:" in rows[0]["messages"][1]["content"]
    assert not (work_dir / "generator/teach/filter_report.json").exists()  # its content is teach.json's details
    again = VERBS["teach"](cfg)
    assert (again.teacher_calls, again.cached) == (0, 4)  # the second teach is a cache read

    trained = VERBS["train"](cfg)
    assert trained.details["adapter_training"] == "lora" and trained.train_steps == 2 and trained.details["last_loss"] is not None
    assert trained.details["method"] == "sft" and trained.n_items == taught.kept
    assert trained.student == str(work_dir / "generator/train/student")
    assert (work_dir / "generator/train/adapter/adapter_config.json").is_file()
    assert (work_dir / "generator/train/student/model.safetensors").is_file()
    saved_cfg = (work_dir / "generator/train/config.yaml").read_text()
    assert "max_steps: 2" in saved_cfg and "per_device_train_batch_size: 2" in saved_cfg  # the args train ran with

    assert json.loads((work_dir / "generator/train/student/config.json").read_text())["dtype"] == "bfloat16"
    assert not (work_dir / "generator/train/checkpoints").exists()  # the finished run's checkpoints are gone

    exported = VERBS["export"](cfg)
    model_dir = work_dir / "generator/export/model"
    assert exported.model == str(model_dir)
    for f in ("model.safetensors", "tokenizer.json", "generation_config.json", "chat_template.jinja"):
        assert (model_dir / f).is_file(), f
    assert exported.details["model_mb"] < 300  # bf16: 135M parameters in ~260 MB, not fp32's 516
    gen = json.loads((model_dir / "generation_config.json").read_text())
    assert gen["eos_token_id"] == 2  # SmolLM2's <|im_end|>, not the GGUF tokenizer's <|im_start|>
    serve = (work_dir / "generator/export/serve.sh").read_text()
    assert f"vllm serve {model_dir}" in serve and "--enable-lora --lora-modules ragdistill-generator-lora=" in serve
    assert read_json(work_dir / "generator/export/prompt.json")["answer_format"] == "text"
    merged = exported.variants["merged"]
    assert set(exported.variants) == {"merged"} and merged.quantized  # bf16 rounds the weights: held to the looser bar
    assert merged.parity == 1.0  # ... yet the bf16 merge answers exactly like fp32 base + adapter here
    assert exported.details["smoke_test"]["questions"] == 2 and exported.details["gate"]["failed"] == []
    base = read_json(work_dir / "generator/export/monitor_baseline.json")  # written by the shared export step
    assert base["metrics"]["n"] == 1 and base["divergence"] == pytest.approx(1 - base["metrics"]["rouge_l_agreement"])

    res = VERBS["evaluate"](cfg)
    r = res.results
    assert set(r) == {"teacher", "student_base", "student"} and res.n_items == 3 and res.split == "test"  # no ONNX export: skipped
    for s in r.values():
        for m in ("exact_match", "token_f1", "answer_correct", "grounding", "ragas_bleu", "ragas_rouge_l", "ragas_string_similarity", "format_ok"):
            assert 0.0 <= s[m] <= 1.0, m
    for s in ("student_base", "student"):
        assert r[s]["tokens_per_s"] > 0 and r[s]["latency_p95_ms"] >= r[s]["latency_p50_ms"] > 0
    # the teacher's answers to the test questions came from the cache the monitor baseline filled (1 of 3)
    assert (res.cached, res.teacher_calls) == (1, 2)
    ea = res.details["error_analysis"]
    assert ea["inherited"] + ea["compression"] == ea["student_errors"] <= 3
    saved = read_json(work_dir / "generator/evaluate/results.json")
    assert saved["results"] == r and len(saved["details"]["answers"]) == 3
    assert "student-student_base" in (work_dir / "generator/evaluate/results.txt").read_text()

    # the routing hooks agree with evaluate: the teacher's token F1 on the held-out records is its score
    records = stage.held_out(cfg)
    teacher_f1 = stage.quality(cfg, records, stage.predictor(cfg, "teacher")(records))
    assert sum(teacher_f1) / 3 == pytest.approx(r["teacher"]["token_f1"])


def test_onnx_export_with_kv_cache_parity_and_the_onnx_slot(make_cfg, link_student, work_dir):
    """export's ONNX graphs (common's onnx_causal_lm, the query rewriter's code): fp32 with past key
    values answers exactly like the exported model on transformers; the int8 copy (weight-only) is a
    quarter of fp32's MatMul weights; pipeline.generator=student_onnx / student_onnx_int8 answer with
    onnxruntime. The packaged SmolLM2 stands in for a trained student (no training here)."""
    import onnx

    link_student("generator", "smollm2-135m-instruct")
    # int8's bar is set to 0 here: its parity on 2 questions is a coin; the default bar is docs/generator.md's measured one
    cfg = make_cfg("generator", [*SMALL, "generator.export.min_parity_quantized=0.0"])
    exported = VERBS["export"](cfg)
    v = exported.variants
    assert set(v) == {"onnx", "onnx_int8"} and v["onnx_int8"].quantized and not v["onnx"].quantized  # no adapter: no merge check
    assert v["onnx"].parity == 1.0 and 0.0 <= v["onnx_int8"].parity <= 1.0
    assert v["onnx_int8"].size_mb < 0.5 * v["onnx"].size_mb and exported.details["int8_method"] == "weight_only"
    graph = onnx.load(str(work_dir / "generator/export/onnx/model.onnx"), load_external_data=False).graph
    assert any(i.name.startswith("past_key_values") for i in graph.input)  # the KV cache
    assert exported.details["model_mb"] < 300  # the vLLM folder in bf16 (the packaged student is fp32: cast)
    smoke = exported.details["smoke_test"]
    assert smoke["questions"] == 2 and smoke["answers"]["onnx"] == smoke["answers"]["model"] and all(smoke["answers"]["model"])
    assert read_json(work_dir / "generator/export/export.json")["variants"]["onnx"]["parity"] == 1.0
    tok = json.loads((work_dir / "generator/export/model/tokenizer.json").read_text())
    assert tok["decoder"]["type"] == "ByteLevel"  # GPT-2-style vocabulary, decoded as such (vLLM prints it right)

    answer = stage.component(cfg, "student_onnx")  # the e2e slot really runs onnxruntime
    assert answer.model_path.endswith("generator/export/onnx")
    rec = stage.held_out(cfg, 1)[0]
    assert answer(rec["question"], rec["contexts"]).strip()
    assert stage.predictor(cfg, "student_onnx_int8")([rec])[0].answer.strip()

    # the accuracy level export passes on (generator.export.int8_accuracy_level) reaches every MatMulNBits op: 4 = int8
    # compute (CPUs with int8 dot products); the default adds no attribute
    from ragdistill.common.onnx_causal_lm import quantize_int8_weights

    fast = quantize_int8_weights(work_dir / "generator/export/onnx", work_dir / "int8_acc4", accuracy_level=4)
    nodes = [n for n in onnx.load(str(fast / "model.onnx")).graph.node if n.op_type == "MatMulNBits"]
    assert nodes and all(next(a.i for a in n.attribute if a.name == "accuracy_level") == 4 for n in nodes)
    default = onnx.load(str(work_dir / "generator/export/onnx_int8/model.onnx")).graph.node
    assert not any(a.name == "accuracy_level" for n in default if n.op_type == "MatMulNBits" for a in n.attribute)


def test_shipped_labels_are_the_keys_teach_and_evaluate_ask_for(make_cfg):
    """Every line of data/labels/generator-squad.jsonl.gz is a label the stage asks for by the same key:
    the teacher's answers to 2,000 train and 400 test questions, the undistilled student's to 200 test
    ones. Teach at full size and the demo's slice are then pure cache reads (no teacher loaded)."""
    from ragdistill.generator.examples import load_examples
    from ragdistill.generator.prompts import build_messages
    from ragdistill.generator.teachers import ANSWER_TEMPLATE, undistilled_teacher

    cfg = make_cfg("generator", ["generator.evaluate.max_test_questions=400"])
    teacher, base = stage.teacher(cfg), undistilled_teacher(cfg)
    assert teacher.teacher_id == "gen:causal_lm:qwen2.5-0.5b-instruct:T=0.0:max=24"
    assert base.teacher_id == "gen:causal_lm:smollm2-135m-instruct:T=0.0:max=24"
    assert stage.label_teacher_ids(cfg) == [teacher.teacher_id, base.teacher_id]
    train = [build_messages(e.question, e.contexts, cfg.generator.prompt) for e in load_examples(cfg, "train", 2000)]
    test = [stage.conversation(cfg, r) for r in stage.held_out(cfg, 400)]
    asked = {label_key(teacher.teacher_id, ANSWER_TEMPLATE, c) for c in train + test} | {label_key(base.teacher_id, ANSWER_TEMPLATE, c) for c in test[:200]}
    shipped = {r["key"] for r in read_jsonl(project_home() / "data/labels/generator-squad.jsonl.gz")}
    assert asked == shipped and len(shipped) > 2590  # (a question asked twice in the sample is one label)

    demo = make_cfg("generator", ["generator.teach.max_train_questions=64"])
    taught = VERBS["teach"](demo)
    assert (taught.n_items, taught.cached, taught.teacher_calls) == (64, 64, 0)
    assert taught.kept + taught.details["dropped"] == 64
    run = stage.teacher(demo).label(test[:12], ANSWER_TEMPLATE)  # evaluate's demo slice: 12 test questions
    assert (run.cached, run.labelled) == (12, 0)


class _ChatServer(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint whose model answers in turn with valid, malformed and schema-breaking JSON."""

    replies = ('{"answer": "a valid answer"}', '{"answer": "cut off', "Sure! The answer is Denver.", '{"answer": ""}')
    calls = 0

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert body["messages"][-1]["content"].endswith("Reply with JSON only: {\"answer\": \"<short answer>\"}.")
        reply = self.replies[type(self).calls % len(self.replies)]
        type(self).calls += 1
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_teacher_malformed_json_is_dropped_and_counted(make_cfg, work_dir):
    server = HTTPServer(("127.0.0.1", 0), _ChatServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = make_cfg("generator", [
            "teacher=openai", "teacher.model=json-teacher", f"teacher.base_url=http://127.0.0.1:{server.server_port}/v1",
            "generator.prompt.answer_format=json", "generator.teach.shipped_labels=[]", "generator.teach.max_train_questions=8",
            "generator.teach.filters.min_grounding=0.0",
        ])
        taught = VERBS["teach"](cfg)
    finally:
        server.shutdown()
    fmt = taught.details["filters"]["format"]
    assert taught.details["total"] == 8 and fmt["dropped"] == 6 and taught.kept == 2 and taught.teacher_calls == 8
    reasons = [e["reason"] for e in fmt["examples"]]
    assert any("malformed JSON" in x for x in reasons)
    rows = read_chat_jsonl(work_dir / "generator/teach/train.jsonl")
    assert [r["messages"][-1]["content"] for r in rows] == ['{"answer": "a valid answer"}'] * 2
    labels = read_jsonl(work_dir / "generator/teach/labels.jsonl")
    assert sum(lbl["dropped_by"] == "format" for lbl in labels) == 6


def test_gkd_trains_when_teacher_and_student_share_a_tokenizer(make_cfg, work_dir):
    """Logit distillation for real: SmolLM2 teaches a LoRA on SmolLM2 (one tokenizer) through TRL's
    GKDTrainer; lmbda=0 keeps it off-policy (no student sampling) so two steps stay cheap."""
    cfg = make_cfg("generator", [*SMALL, "generator.train.method=gkd", "generator.train.gkd_lmbda=0.0"])
    VERBS["teach"](cfg)
    trained = VERBS["train"](cfg)
    info = trained.details
    assert info["method"] == "gkd" and trained.train_steps == 2 and info["teacher"] == "smollm2-135m-instruct"
    assert len(info["losses"]) == 2 and all(loss == loss and loss >= 0 for loss in info["losses"])  # generalised JSD: finite, non-negative
    assert (work_dir / "generator/train/student/model.safetensors").is_file()


def test_gkd_with_different_tokenizers_names_both(make_cfg):
    cfg = make_cfg("generator", ["generator.train.method=gkd"])
    with pytest.raises(RagdistillError) as e:
        stage.train(cfg)
    msg = str(e.value)
    assert "qwen2.5-0.5b-instruct (Qwen2TokenizerFast, vocab 151" in msg
    assert "smollm2-135m-instruct (PreTrainedTokenizerFast, vocab 49152)" in msg
    assert "generator.train.method=sft" in msg


def test_train_without_teach_and_bad_training_file_name_the_fix(make_cfg, work_dir):
    cfg = make_cfg("generator", [])
    with pytest.raises(RagdistillError, match="run `ragdistill generator teach` first"):
        stage.train(cfg)
    bad = work_dir / "generator/teach/train.jsonl"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n'
                   '{"messages": [{"role": "user", "content": "q"}]}\n')
    with pytest.raises(RagdistillError, match=r"train.jsonl:2: expected"):
        stage.train(cfg)
    bad.write_text('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n')
    with pytest.raises(RagdistillError, match=r"generator.train.args: num_train_epoch \(did you mean num_train_epochs\?\) is not an argument of trl"):
        stage.train(make_cfg("generator", ["+generator.train.args.num_train_epoch=1"]))
    with pytest.raises(RagdistillError, match=r"generator.train.args: seed is set by the stage itself"):
        stage.train(make_cfg("generator", ["+generator.train.args.seed=1"]))


def test_choices_are_checked_when_the_config_is_composed(make_cfg):
    with pytest.raises(RagdistillError, match=r"generator.train.method=kd"):
        make_cfg("generator", ["generator.train.method=kd"])
    with pytest.raises(RagdistillError, match=r"generator.train.quantization=8bit"):
        make_cfg("generator", ["generator.train.quantization=8bit"])
    with pytest.raises(RagdistillError, match=r"generator.prompt.answer_format=yaml"):
        make_cfg("generator", ["generator.prompt.answer_format=yaml"])
    cfg = make_cfg("generator", ["generator.train.quantization=4bit", "generator.train.bf16=false"])
    assert cfg.generator.train.quantization.value == "4bit" and cfg.generator.train.bf16 is False


class _NullContentServer(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that answers the first ``good`` requests with text, then with
    ``"content": null`` (what a server returns for a refusal or a tool call: not an answer)."""

    good = 2
    calls = 0

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        n = type(self).calls
        type(self).calls += 1
        content = f"answer {n}" if n < type(self).good else None
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_a_teacher_reply_that_is_not_text_is_an_error_and_keeps_earlier_labels(make_cfg):
    server = HTTPServer(("127.0.0.1", 0), _NullContentServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    over = ["teacher=openai", "teacher.model=null-teacher", f"teacher.base_url=http://127.0.0.1:{server.server_port}/v1",
            "teacher.batch_size=2", "generator.teach.shipped_labels=[]", "generator.teach.max_train_questions=4",
            "generator.teach.filters.min_grounding=0.0"]
    try:
        cfg = make_cfg("generator", over)
        with pytest.raises(RagdistillError, match=r"message content is not text \(NoneType: 'None'\); labels of earlier batches are kept"):
            VERBS["teach"](cfg)
        _NullContentServer.good = 10**6  # the server is fixed: the rerun asks only for what is missing
        again = VERBS["teach"](cfg)
    finally:
        server.shutdown()
    assert (again.cached, again.teacher_calls) == (2, 2)  # the first batch's two answers were not lost


def test_a_malformed_line_in_a_shipped_labels_file_names_file_and_line(make_cfg, work_dir):
    labels = work_dir / "generator-extra.jsonl"
    labels.write_text('{"key": "k1", "teacher": "t", "value": "Denver"}\n{"key": "k2", "value": \n')
    cfg = make_cfg("generator", [f"generator.teach.shipped_labels=[{labels}]", "generator.teach.max_train_questions=2"])
    with pytest.raises(RagdistillError, match=r"generator-extra\.jsonl:2: malformed JSON line"):
        VERBS["teach"](cfg)


def test_gold_distils_the_qwen_teacher_across_tokenizers(make_cfg, work_dir):
    """Two steps of TRL's GOLD (ULD loss) from the default teacher, Qwen2.5-0.5B (151k-token vocabulary),
    into the SmolLM2 student (49k): the answers come from the shipped labels (teach is a cache read),
    the teacher's distributions from its own forward pass over them."""
    cfg = make_cfg("generator", ["generator.teach.max_train_questions=4", "generator.teach.filters.min_grounding=0.0",
                                 "generator.train.method=gold", "generator.train.args.max_steps=2",
                                 "generator.train.args.per_device_train_batch_size=2", "generator.train.args.gradient_accumulation_steps=1",
                                 "generator.train.lora.r=4", "run.torch_threads=1"])
    taught = VERBS["teach"](cfg)
    assert (taught.cached, taught.teacher_calls) == (4, 0)
    trained = VERBS["train"](cfg)
    info = trained.details
    assert info["method"] == "gold" and trained.train_steps == 2 and info["teacher"] == "qwen2.5-0.5b-instruct"
    assert len(info["losses"]) == 2 and all(loss == loss and loss >= 0 for loss in info["losses"])  # ULD distances: finite, >= 0
    assert (work_dir / "generator/train/student/model.safetensors").is_file()


def test_full_fine_tuning_saves_the_student_without_an_adapter(make_cfg, work_dir):
    cfg = make_cfg("generator", [*SMALL, "generator.train.lora.enabled=false", "generator.train.args.learning_rate=5e-5"])
    VERBS["teach"](cfg)
    trained = VERBS["train"](cfg)
    assert trained.details["adapter_training"] == "full" and trained.train_steps == 2 and trained.details["adapter_dir"] is None
    assert not (work_dir / "generator/train/adapter").exists()
    assert json.loads((work_dir / "generator/train/student/config.json").read_text())["dtype"] == "bfloat16"


def test_a_killed_training_run_resumes_from_its_checkpoint(make_cfg, work_dir):
    """``generator train`` killed after its first checkpoint; the rerun of the same settings continues from
    it (same step count in total), and a rerun with other settings refuses the foreign checkpoint."""
    import os
    import subprocess
    import sys
    import time

    over = [o for o in SMALL if "max_steps" not in o] + ["generator.train.args.max_steps=8", "generator.train.args.save_steps=2"]
    cfg = make_cfg("generator", over)
    VERBS["teach"](cfg)
    ckpts = work_dir / "generator/train/checkpoints"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-m", "ragdistill.common.cli", "generator", "train", f"paths.work_dir={work_dir}",
                          "run.report_to=[]", *over], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list(ckpts.glob("checkpoint-*/trainer_state.json")) and p.poll() is None:
        time.sleep(0.2)
    p.kill()
    _, err = p.communicate()
    done = sorted(int(c.name.split("-")[1]) for c in ckpts.glob("checkpoint-*") if (c / "trainer_state.json").is_file())
    assert done and done[-1] < 8, err[-2000:]
    with pytest.raises(RagdistillError, match=r"generator\.train\.resume=false to discard them"):
        stage.train(make_cfg("generator", [*over, "generator.train.args.learning_rate=1e-4"]))
    trained = VERBS["train"](cfg)
    assert trained.details["resumed_from"].endswith(f"checkpoint-{done[-1]}") and trained.train_steps == 8
    assert not ckpts.exists()
