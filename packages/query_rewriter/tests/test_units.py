"""Fast unit tests: the expansion parser, the output filters, the CANARD answer corpus, BM25 scoring
and bad input (no model is loaded here)."""

from __future__ import annotations

import json

import pytest

from ragdistill.common.data import Document, RewriteRecord, answer_spans, derive_answer_corpus, load_rewrites
from ragdistill.common.errors import RagdistillError
from ragdistill.query_rewriter.filters import FilterConfig, clean_output, filter_outputs, normalize, parse_expansions
from ragdistill.query_rewriter.prompts import expansion_example, format_conversation, rewrite_example
from ragdistill.query_rewriter.retrieval import RRF_K, BM25Retriever
from ragdistill.query_rewriter.scoring import bleu, exact_match, with_lift

HIST = ["Frank Zappa", "Disbandment", "What group disbanded?", "Zappa and the Mothers of Invention"]


def rw(question: str, history: list[str] | None = None, rid: str = "r1") -> RewriteRecord:
    return RewriteRecord(rid, list(HIST if history is None else history), question, None)


# ------------------------------------------------------------------------------------ parser


def test_parse_expansions_splits_on_separator_and_keeps_empty_parts():
    assert parse_expansions("a b ||| c d |||e") == ["a b", "c d", "e"]
    assert parse_expansions('Queries: "x" ||| y') == ["x", "y"]
    assert parse_expansions("one ||| ||| three") == ["one", "", "three"]
    assert parse_expansions("   ") == []


def test_clean_output_strips_labels_and_quotes_only():
    assert clean_output('  Rewrite: "When did Zappa disband?" ') == "When did Zappa disband?"
    assert clean_output("Standalone question: Where was Tesla born?") == "Where was Tesla born?"
    assert clean_output("What: is this?") == "What: is this?"  # not a label
    assert normalize("When did  Zappa disband?!") == "when did zappa disband"


# ----------------------------------------------------------------------------------- filters


def test_filters_reject_each_bad_kind_and_count_them():
    ex = rewrite_example(rw("When did they disband?"))
    q = expansion_example("q1", "vitamin D and fractures")
    cases = [
        (ex, "When did Zappa and the Mothers of Invention disband?", None),
        (ex, "When did they disband?", None),  # unchanged: kept, counted
        (ex, "   ", "empty"),
        (ex, "Zappa and the Mothers of Invention", "echoed"),  # repeats an earlier turn
        (ex, "Frank Zappa", "echoed"),
        (ex, "When did they disband? ||| other", "malformed"),
        (ex, "line one\nline two", "malformed"),
        (ex, " ".join(["word"] * 30), "too_long"),  # > 4x the question's 4 words
        (q, "low vitamin D fracture risk ||| vitamin D deficiency bone fractures ||| vitamin D and hip fracture", None),
        (q, "only one ||| two", "malformed"),  # 2 < min 3
        (q, " ||| ".join(f"v{i} fractures" for i in range(6)), "malformed"),  # 6 > max 5
        (q, "a ||| ||| b ||| c", "malformed"),  # empty part
        (q, "vitamin D and fractures ||| b c ||| d e", "echoed"),  # a part equals the query
        (q, "x y ||| z w ||| " + " ".join(["long"] * 41), "too_long"),
        (q, "", "empty"),
    ]
    kept, report = filter_outputs([c[0] for c in cases], [c[1] for c in cases], FilterConfig())
    counts = report.as_dict()
    assert counts["rewrite"] == {"total": 8, "kept": 2, "empty": 1, "malformed": 2, "echoed": 2, "too_long": 1, "unchanged": 1}
    assert counts["expansion"] == {"total": 7, "kept": 1, "empty": 1, "malformed": 3, "echoed": 1, "too_long": 1, "unchanged": 0}
    assert kept[0][1] == "When did Zappa and the Mothers of Invention disband?"
    # the kept expansion is re-joined with the canonical separator
    assert kept[-1][1].count(" ||| ") == 2


def test_filter_skips_outputs_of_other_shards():
    ex = rewrite_example(rw("When did they disband?"))
    kept, report = filter_outputs([ex], [None], FilterConfig())
    assert kept == [] and report.as_dict() == {}


# ----------------------------------------------------------------------------- conversations


def test_conversation_format_keeps_topic_recent_turns_and_cuts_long_answers():
    hist = ["T", "S", "q1", "a1", "q2", "a2 " + "x" * 300, "q3", "a3"]
    text = format_conversation(hist, "and then?", max_turns=2, max_answer_chars=50)
    assert text.splitlines()[0] == "Topic: T - S"
    assert "q1" not in text and "Q: q2" in text and "Q: q3" in text
    assert text.endswith("Follow-up question: and then?")
    assert all(len(line) < 70 for line in text.splitlines())


def test_record_without_question_is_a_clear_error(tmp_path):
    with pytest.raises(RagdistillError, match="has no question"):
        rewrite_example(RewriteRecord("dlg#3", HIST, "   "))
    bad = tmp_path / "canard"
    bad.mkdir()
    (bad / "test.json").write_text(json.dumps([{"History": HIST, "Question": "ok?", "Rewrite": "ok?"}, {"History": HIST, "Rewrite": "x"}]))
    with pytest.raises(RagdistillError, match=r"record 1 has no 'Question'"):
        load_rewrites(str(bad))


# ------------------------------------------------------------------------------------ corpus


def test_answer_corpus_links_each_question_to_the_next_records_answer():
    h0 = ["T", "S"]
    recs = [
        RewriteRecord("a", h0, "q1"),
        RewriteRecord("b", [*h0, "q1", "answer one"], "q2"),
        RewriteRecord("c", [*h0, "q1", "answer one", "q2", "I don't know."], "q3"),
        RewriteRecord("d", [*h0, "q1", "answer one", "q2", "I don't know.", "q3", "answer one"], "q4"),  # last of dialog
        RewriteRecord("e", ["U", "V"], "p1"),  # a new dialog
        RewriteRecord("f", ["U", "V", "p1", "answer two"], "p2"),
    ]
    assert answer_spans(recs) == {0: "answer one", 1: "I don't know.", 2: "answer one", 4: "answer two"}
    data, judged = derive_answer_corpus(recs, "test")
    assert sorted(data.corpus) == ["a:answer", "e:answer"]  # identical spans merged, no-answer dropped
    assert data.qrels["test"] == {"a": {"a:answer": 1}, "c": {"a:answer": 1}, "e": {"e:answer": 1}}
    assert [r.gold_doc_ids for r in judged] == [["a:answer"], ["a:answer"], ["e:answer"]]
    with pytest.raises(RagdistillError, match="no answer spans"):
        derive_answer_corpus([RewriteRecord("x", h0, "q")], "test")


def test_answer_corpus_on_bundled_canard_test_matches_data_md():
    test = load_rewrites("canard")["test"]
    spans = answer_spans(test)
    assert len(spans) == len(test) - sum(len(r.history) == 2 for r in test)  # one per non-final turn (~4,800)
    data, judged = derive_answer_corpus(test, "test")
    assert 3500 < len(data.corpus) <= len(spans) and len(judged) == len(data.qrels["test"])


# ------------------------------------------------------------------------------------ scoring


def test_bm25_union_fuses_variants_by_reciprocal_rank():
    corpus = {"d1": Document("d1", "zappa mothers of invention disbanded in 1969"),
              "d2": Document("d2", "tesla was born in smiljan"), "d3": Document("d3", "curie won two nobel prizes")}
    r = BM25Retriever(corpus)
    run = r.search({"q": "when did the mothers disband"}, k=3)
    assert "d1" in run["q"] and "d2" not in run["q"]
    fused = r.search_union({"q": ["where was tesla born", "nobel prizes curie"]}, k=3)
    assert fused["q"] == pytest.approx({"d2": 1 / (RRF_K + 1), "d3": 1 / (RRF_K + 1)})


def test_lift_exact_match_and_bleu():
    m = with_lift({"recall@10": 0.5, "recall@100": 0.9, "ndcg@10": 0.3}, {"recall@10": 0.2, "recall@100": 0.5, "ndcg@10": 0.1})
    assert m["recall_lift@10"] == pytest.approx(0.3) and m["recall_lift@100"] == pytest.approx(0.4)
    assert m["recall_lift"] == pytest.approx(0.35)
    assert exact_match(["When did Zappa disband?", "no"], ["when did zappa disband", "yes"]) == 0.5
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)


# ----------------------------------------------------------------------------- teacher prompt


def test_teacher_examples_are_resolving_human_rewrites_one_per_dialog_and_stable():
    from ragdistill.query_rewriter.prompts import HANDWRITTEN_REWRITE_SHOTS, TeacherPrompt, human_shots, shot_records

    train = load_rewrites("canard")["train"]
    chosen = shot_records(train, 6)
    assert [r.id for r in chosen] == [r.id for r in shot_records(train, 6)]  # fixed seed: the cache key depends on the data only
    assert len({r.history[0] for r in chosen}) == 6  # one per dialog topic
    assert all(normalize(r.rewrite) != normalize(r.question) and len(r.history) >= 4 for r in chosen)
    shots = human_shots(chosen, max_turns=2, max_answer_chars=160)
    prompt = TeacherPrompt(rewrite_shots=shots)
    msgs = prompt.messages(rewrite_example(rw("When did they disband?")))
    assert [m["role"] for m in msgs] == ["system"] + ["user", "assistant"] * 6 + ["user"]
    assert msgs[2]["content"] == chosen[0].rewrite.strip() and msgs[-1]["content"].endswith("Follow-up question: When did they disband?")
    # another set of examples is another cache key; the hand-written examples are the default
    assert prompt.template_id != TeacherPrompt().template_id and TeacherPrompt().rewrite_shots == HANDWRITTEN_REWRITE_SHOTS
    with pytest.raises(RagdistillError, match="rewrite_shots=3"):  # two dialogs only
        shot_records([r for r in train if r.history[0] in {chosen[0].history[0], chosen[1].history[0]}], 3)


def test_teach_never_labels_the_teachers_own_examples(make_cfg):
    from ragdistill.query_rewriter.examples import rewrite_train_examples, teacher_prompt

    cfg = make_cfg("query_rewriter", ["query_rewriter.teach.rewrite_records=3430", "query_rewriter.teach.rewrite_shots=4"])
    shot_sources = {s for s, _ in teacher_prompt(cfg).rewrite_shots}
    taught = rewrite_train_examples(cfg)
    assert len(taught) == 3430 - 4 and not shot_sources & {e.source for e in taught}


def test_the_teacher_prompt_is_the_same_on_other_run_data(make_cfg):
    """The e2e harness composes the rewriter with the run's data (SQuAD, SciFact): the teacher's
    examples still come from CANARD, so it prompts (and keys its labels) as teach did."""
    from ragdistill.query_rewriter.examples import teacher_prompt

    assert teacher_prompt(make_cfg("query_rewriter", ["data=squad"])) == teacher_prompt(make_cfg("query_rewriter"))
    with pytest.raises(RagdistillError, match="shot_data"):
        teacher_prompt(make_cfg("query_rewriter", ["data=squad", "query_rewriter.teach.shot_data=null"]))
