"""teach -> filter -> train (LoRA, a few steps) -> merge -> export -> evaluate on a small slice, with
real models (SmolLM2-135M stands in as the teacher so the test stays fast), plus the teacher paths
that must fail softly or loudly: malformed JSON from an OpenAI-compatible endpoint, GKD across
tokenizers."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import read_json, read_jsonl
from ragdistill.generator.evaluate import evaluate
from ragdistill.generator.export import export
from ragdistill.generator.teach import teach
from ragdistill.generator.train import read_chat_jsonl, train

SMALL = [
    "teacher.model=smollm2-135m-instruct", "teacher.max_new_tokens=12", "generator.student_max_new_tokens=12",
    "generator.teach.labels_files=[]", "generator.teach.max_train_questions=4", "generator.retrieval.top_k=2",
    "generator.prompt.max_context_chars=400", "generator.filters.min_grounding=0.0", "generator.train.max_steps=2",
    "generator.train.batch_size=2", "generator.train.max_length=384", "generator.train.lora.r=4",
    "generator.export.smoke_questions=1", "generator.evaluate.max_test_questions=3", "generator.evaluate.latency_items=1",
    "generator.evaluate.teacher_latency_items=1", "run.torch_threads=1",
]


def test_teach_train_merge_export_evaluate(make_cfg, work_dir):
    cfg = make_cfg("generator", SMALL)
    report = teach(cfg)
    assert report["total"] == 4 and report["kept"] + report["dropped"] == 4
    assert set(report["filters"]) == {"format", "length", "grounding"}
    rows = read_jsonl(work_dir / "generator/teach/train.jsonl")
    assert len(rows) == report["kept"] > 0
    assert [m["role"] for m in rows[0]["messages"]] == ["system", "user", "assistant"]
    assert "Question:" in rows[0]["messages"][1]["content"]

    info = train(cfg)
    assert info["adapter_training"] == "lora" and info["steps"] == 2 and info["last_loss"] is not None
    assert (work_dir / "generator/train/adapter/adapter_config.json").is_file()
    assert (work_dir / "generator/train/merged/model.safetensors").is_file()

    exp = export(cfg)
    model_dir = work_dir / "generator/export/model"
    for f in ("model.safetensors", "tokenizer.json", "generation_config.json", "chat_template.jinja"):
        assert (model_dir / f).is_file(), f
    gen = json.loads((model_dir / "generation_config.json").read_text())
    assert gen["eos_token_id"] == 2  # SmolLM2's <|im_end|>, not the GGUF tokenizer's <|im_start|>
    serve = (work_dir / "generator/export/serve.sh").read_text()
    assert f"vllm serve {model_dir}" in serve and "--enable-lora --lora-modules ragdistill-generator-lora=" in serve
    assert exp["smoke_test"]["merge_parity"] == 1.0 and exp["smoke_test"]["ok"]

    res = evaluate(cfg)
    r = res["results"]
    assert set(r) == {"teacher", "student_base", "student"}
    for s in r.values():
        for m in ("exact_match", "token_f1", "answer_correct", "grounding", "ragas_bleu", "ragas_rouge_l", "ragas_string_similarity", "format_ok"):
            assert 0.0 <= s[m] <= 1.0, m
    for s in ("student_base", "student"):
        assert r[s]["tokens_per_s"] > 0 and r[s]["latency_p95_ms"] >= r[s]["latency_p50_ms"] > 0
    ea = res["error_analysis"]
    assert ea["inherited"] + ea["compression"] == ea["student_errors"] <= 3
    saved = read_json(work_dir / "generator/evaluate/results.json")
    assert saved["results"] == r and len(saved["answers"]) == 3


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
            "generator.prompt.answer_format=json", "generator.teach.labels_files=[]", "generator.teach.max_train_questions=8",
            "generator.filters.min_grounding=0.0",
        ])
        report = teach(cfg)
    finally:
        server.shutdown()
    fmt = report["filters"]["format"]
    assert report["total"] == 8 and fmt["dropped"] == 6 and report["kept"] == 2
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
    teach(cfg)
    info = train(cfg)
    assert info["method"] == "gkd" and info["steps"] == 2 and info["teacher"] == "smollm2-135m-instruct"
    assert all(loss == loss and loss >= 0 for loss in info["losses"])  # generalised JSD: finite, non-negative
    assert (work_dir / "generator/train/merged/model.safetensors").is_file()


def test_gkd_with_different_tokenizers_names_both(make_cfg):
    cfg = make_cfg("generator", ["generator.train.method=gkd"])
    with pytest.raises(RagdistillError) as e:
        train(cfg)
    msg = str(e.value)
    assert "qwen2.5-0.5b-instruct (Qwen2TokenizerFast, vocab 151" in msg
    assert "smollm2-135m-instruct (LlamaTokenizerFast, vocab 49152)" in msg
    assert "generator.train.method=sft" in msg


def test_train_without_teach_and_bad_training_file_name_the_fix(make_cfg, work_dir):
    cfg = make_cfg("generator", [])
    with pytest.raises(RagdistillError, match="run `ragdistill generator teach` first"):
        train(cfg)
    bad = work_dir / "generator/teach/train.jsonl"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n'
                   '{"messages": [{"role": "user", "content": "q"}]}\n')
    with pytest.raises(RagdistillError, match=r"train.jsonl:2: expected"):
        train(cfg)
