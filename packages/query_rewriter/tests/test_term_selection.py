"""The term-selection student (term_selection.py): its labels, its query, and teach -> train -> export
-> evaluate with the packaged all-MiniLM-L6-v2 and real ONNX sessions."""

from __future__ import annotations

import pytest

from ragdistill.common.data import RewriteRecord
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import read_jsonl
from ragdistill.common.models import load_tokenizer, resolve_model
from ragdistill.common.ops.verbs import stage_verbs
from ragdistill.query_rewriter import stage
from ragdistill.query_rewriter.prompts import rewrite_example
from ragdistill.query_rewriter.student import is_term_selector, load_student, load_student_onnx
from ragdistill.query_rewriter.term_selection import context_pieces, encode, selected_query, tag_targets

pytestmark = pytest.mark.usefixtures("one_thread")
VERBS = stage_verbs(stage)
HISTORY = ["Frank Zappa", "The Mothers of Invention", "When did the band form?", "The Mothers formed in 1964 in California."]
EX = rewrite_example(RewriteRecord("r1", HISTORY, "When did they disband?", "When did the Mothers of Invention disband?"), 2, 160)


def test_labels_tag_the_words_the_target_adds_to_the_question():
    pieces = context_pieces(EX)
    tags = tag_targets(EX, "When did Zappa and the Mothers of Invention disband?")
    tagged = [p for p, t in zip(pieces, tags, strict=True) if t]
    assert tagged == ["Zappa", "Mothers", "Invention", "Mothers"]  # every occurrence; not 'the', 'of', 'When', 'did'
    assert "Follow" not in pieces and "disband" not in pieces  # the follow-up line is not context
    assert tag_targets(EX, "When did they disband?") == [0] * len(pieces)  # an unchanged rewrite tags nothing


def test_query_is_the_question_plus_each_picked_term_once():
    pieces = context_pieces(EX)
    picked = [p in ("Zappa", "Mothers", "the", "did") for p in pieces]
    assert selected_query(EX, pieces, picked) == "When did they disband? Zappa Mothers"  # stopwords, question words, repeats dropped
    assert selected_query(EX, pieces, [False] * len(pieces)) == EX.question


def test_the_threshold_decides_how_many_words_are_added():
    selector = load_student("minilm-l6", 128)  # probabilities of an untrained head: strictly inside (0, 1)
    outs = selector.generate_at([EX], [1.0, 0.0])
    assert outs[1.0] == [EX.question]
    assert outs[0.0] == [selected_query(EX, context_pieces(EX), [True] * len(context_pieces(EX)))]
    assert outs[0.0][0] == "When did they disband? Frank Zappa Mothers Invention band form formed 1964 California"
    selector.threshold = 1.0
    assert selector.generate([EX]) == outs[1.0] and selector.model.config.term_threshold == 1.0


def test_labels_sit_on_the_first_token_of_each_tagged_word():
    tok = load_tokenizer(resolve_model("minilm-l6"))
    enc, starts = encode(tok, [EX], 128, ["When did Zappa and the Mothers of Invention disband?"])
    ids, labels = enc["input_ids"][0].tolist(), enc["labels"][0].tolist()
    on = [tok.convert_ids_to_tokens(i) for i, lab in zip(ids, labels, strict=True) if lab == 1]
    assert on == ["za", "mothers", "invention", "mothers"]  # "zappa" is za ##ppa: the label is on its first piece
    assert sum(lab != -100 for lab in labels) == len(context_pieces(EX)) == sum(s is not None for s in starts[0])


def test_encoder_only_checkpoints_are_term_selectors(tmp_path):
    from transformers import BertConfig, DistilBertConfig, GPT2Config, T5Config

    assert is_term_selector(resolve_model("minilm-l6"))
    assert not is_term_selector(resolve_model("smollm2-135m-instruct"))
    # what hub checkpoints declare: bert-base-uncased / distilbert ship masked-LM heads, gpt2 / t5 generate
    for name, config, selector in [("bert", BertConfig(architectures=["BertForMaskedLM"]), True),
                                   ("distilbert", DistilBertConfig(architectures=["DistilBertForMaskedLM"]), True),
                                   ("gpt2", GPT2Config(architectures=["GPT2LMHeadModel"]), False),
                                   ("t5", T5Config(architectures=["T5ForConditionalGeneration"]), False)]:
        config.save_pretrained(tmp_path / name)
        assert is_term_selector(tmp_path / name) is selector, name


def test_a_term_selector_without_rewrite_targets_is_a_clear_error(make_cfg):
    cfg = make_cfg("query_rewriter", ["query_rewriter=term_selection", "query_rewriter.teach.tasks=[expansion]",
                                      "query_rewriter.teach.expansion_data=[scifact]", "query_rewriter.teach.expansion_queries=2",
                                      "query_rewriter.train.human_records=0"])
    VERBS["teach"](cfg)
    with pytest.raises(RagdistillError, match="term selector, which learns rewrites only, and there are no rewrite targets"):
        VERBS["train"](cfg)


SMALL = [
    "query_rewriter=term_selection",
    "query_rewriter.teach.rewrite_records=24",
    "query_rewriter.teach.expansion_data=[scifact]",
    "query_rewriter.teach.expansion_queries=2",
    "query_rewriter.train.human_records=40",
    "query_rewriter.train.args.max_steps=16",
    "query_rewriter.train.eval_steps=8",
    "query_rewriter.train.args.learning_rate=2e-4",
    "query_rewriter.train.args.per_device_train_batch_size=8",
    "query_rewriter.train.max_source_length=128",
    "query_rewriter.train.val_records=8",
    "query_rewriter.export.parity_records=4",
    "query_rewriter.evaluate.test_records=8",
    "query_rewriter.evaluate.expansion_queries=2",
    "query_rewriter.evaluate.latency_queries=2",
    "query_rewriter.evaluate.teacher_latency=false",
    "query_rewriter.evaluate.systems=[teacher,student_base,student,student_onnx,student_onnx_int8]",
    "monitor.baseline_inputs=0",
]


def _tag_f1(selector, pairs) -> float:
    """Token-level F1 of the selector's tags against the distillation labels on ``pairs``."""
    import torch

    tp = fp = fn = 0
    with torch.inference_mode():
        for ex, target in pairs:
            enc, _ = encode(selector.tok, [ex], 128, [target])
            labels = enc.pop("labels")[0]
            pred = selector.model(**enc).logits[0].argmax(-1)
            keep = labels != -100
            tp += int(((pred == 1) & (labels == 1) & keep).sum())
            fp += int(((pred == 1) & (labels == 0) & keep).sum())
            fn += int(((pred == 0) & (labels == 1) & keep).sum())
    return 2 * tp / max(2 * tp + fp + fn, 1)


def test_term_selector_pipeline(make_cfg, work_dir):
    from ragdistill.query_rewriter.train import load_targets

    cfg = make_cfg("query_rewriter", SMALL)
    assert cfg.student.model == "minilm-l6" and cfg.query_rewriter.train.args.per_device_train_batch_size == 8
    VERBS["teach"](cfg)
    pairs = [(e, t) for e, t in load_targets(cfg) if e.task == "rewrite"]
    before = _tag_f1(load_student("minilm-l6", 128, int(cfg.run.seed)), pairs)  # the head training starts from

    trained = VERBS["train"](cfg)
    m = trained.details
    assert m["kind"] == "term_selection" and trained.train_steps == 16 and m["tasks"] == {"rewrite": len(pairs), "expansion": 0}
    assert [h["step"] for h in m["validation"]] == [8, 16]
    assert all(h["threshold"] in cfg.query_rewriter.train.term_thresholds for h in m["validation"])
    kept = next(h for h in m["validation"] if h["step"] == m["best_checkpoint_step"])
    model_dir = work_dir / "query_rewriter/train/student"
    assert load_student(str(model_dir), 128).threshold == kept["threshold"]  # the kept checkpoint's own threshold
    after = _tag_f1(load_student(str(model_dir), 128), pairs)
    assert after > before + 0.2, (before, after)  # distillation taught it which words to add
    with pytest.raises(RagdistillError, match="term-selection student"):
        stage.scorer(cfg, "sequence_logprob")  # routing needs a generative student's log p

    rep = VERBS["export"](cfg)
    assert sorted(p.name for p in (work_dir / "query_rewriter/export/model").glob("*.onnx")) == ["model.onnx"]
    assert rep.variants["onnx"].parity == 1.0
    int8 = rep.variants["onnx_int8"]
    assert int8.quantized and int8.parity >= cfg.query_rewriter.export.min_parity_quantized  # the gate passed it
    assert int8.parity == (4 - len(rep.details["mismatches"]["onnx_int8"])) / 4
    onnx = load_student_onnx(work_dir / "query_rewriter/export/model", 128)
    assert type(onnx.model).__name__ == "ORTModelForTokenClassification"
    assert onnx.threshold == load_student_onnx(work_dir / "query_rewriter/export/model_int8", 128).threshold == kept["threshold"]

    res = VERBS["evaluate"](cfg).results
    assert {"teacher", "student_base", "student", "student_onnx", "student_onnx_int8"} <= set(res)
    assert res["student_onnx"]["recall_lift"] == res["student"]["recall_lift"]
    assert res["student_onnx"]["scifact_expansion_valid"] == 0.0  # no expansion task
    assert res["student_onnx_int8"]["parity"] == int8.parity
    out = read_jsonl(work_dir / "query_rewriter/evaluate/outputs.jsonl")
    for r in out:
        if r["task"] == "rewrite":
            assert r["student"].startswith(r["source"].rsplit("Follow-up question: ", 1)[1])
        else:
            assert r["student"] == ""

    rewrite = stage.component(cfg, "student_onnx")
    q = "When did they disband?"
    assert rewrite(HISTORY, q).startswith(q)
