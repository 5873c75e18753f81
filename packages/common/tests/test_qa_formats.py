"""A user's own data: generic QA JSONL, a BEIR folder with answers.jsonl (test qrels only, as most
public BEIR sets ship), CANARD as a conversational RAG set, and every bad-input message (file:line)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragdistill.common.data import context_doc_id, load_canard_rag, load_qa, load_rag, load_retrieval, load_rewrites
from ragdistill.common.errors import RagdistillError

PARIS = "Paris is the capital and most populous city of France."
BERLIN = "Berlin is the capital and largest city of Germany."


def _jsonl(path: Path, rows: list[dict | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_qa_jsonl_becomes_a_rag_set(tmp_path: Path) -> None:
    f = _jsonl(tmp_path / "qa.jsonl", [
        {"id": "q1", "question": "What is the capital of France?", "answers": ["Paris"], "contexts": [PARIS]},
        {"id": "q2", "question": "And its population?", "answers": ["2.1 million"], "contexts": [PARIS],
         "history": ["What is the capital of France?", "Paris"]},
        {"id": "q3", "question": "Capital of Germany?", "answers": ["Berlin"], "contexts": [BERLIN, PARIS], "split": "train"},
    ])
    data, records = load_rag(str(f))
    assert sorted(data.qrels) == ["test", "train"] and len(data.corpus) == 2  # one document per distinct passage
    assert data.qrels["test"] == {"q1": {context_doc_id(PARIS): 1}, "q2": {context_doc_id(PARIS): 1}}
    assert data.qrels["train"]["q3"] == {context_doc_id(BERLIN): 1, context_doc_id(PARIS): 1}
    q2 = records["test"][1]
    assert (q2.id, q2.answers, q2.history, q2.gold_doc_ids) == ("q2", ["2.1 million"], ["What is the capital of France?", "Paris"],
                                                                [context_doc_id(PARIS)])
    assert load_retrieval(str(f)).corpus == data.corpus and load_qa(str(f)) == records


def _beir(root: Path, answers: list[dict | str] | None) -> Path:
    """A BEIR folder with test qrels only (no train split), optionally with answers.jsonl."""
    (root / "qrels").mkdir(parents=True)
    _jsonl(root / "corpus.jsonl", [{"_id": "d1", "title": "France", "text": PARIS}, {"_id": "d2", "title": "Germany", "text": BERLIN}])
    _jsonl(root / "queries.jsonl", [{"_id": "q1", "text": "capital of France"}, {"_id": "q2", "text": "capital of Germany"}])
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    if answers is not None:
        _jsonl(root / "answers.jsonl", answers)
    return root


def test_beir_folder_with_answers(tmp_path: Path) -> None:
    root = _beir(tmp_path / "b", [{"_id": "q1", "answers": ["Paris"], "history": ["Tell me about France", "It is in Europe"]}])
    _, records = load_rag(str(root))
    assert list(records) == ["test"] and [r.id for r in records["test"]] == ["q1"]  # q2 has no answers: retrieval only
    r = records["test"][0]
    assert r.answers == ["Paris"] and r.gold_doc_ids == ["d1"] and r.contexts == [f"France. {PARIS}"]
    assert r.history == ["Tell me about France", "It is in Europe"]
    # without answers.jsonl: a clear error where answers are needed, retrieval data alone where they are not
    plain = _beir(tmp_path / "plain", None)
    with pytest.raises(RagdistillError, match=r"answers\.jsonl: not found"):
        load_rag(str(plain))
    assert load_rag(str(plain), require_answers=False)[1] == {}


def test_test_only_beir_folder_names_the_split_a_training_verb_needs(tmp_path: Path) -> None:
    data = load_retrieval(str(_beir(tmp_path / "b", None)))
    assert data.split("test")[0] == {"q1": "capital of France", "q2": "capital of Germany"}
    with pytest.raises(RagdistillError, match=r"has no split 'train' \(available: \['test'\]\); verbs that train \(teach, train\) "
                                              r"read it: data\.train_split.*qrels/train\.tsv.*only evaluate.*test split alone"):
        data.split("train")


@pytest.mark.parametrize(("line", "message"), [
    ({"id": "a", "answers": ["x"], "contexts": ["c"]}, r"qa\.jsonl:2: record 'a' has no \"question\""),
    ({"id": "a", "question": "q?", "answers": [], "contexts": ["c"]}, r"qa\.jsonl:2: 'answers' is empty; give at least one reference"),
    ({"id": "a", "question": "q?", "answers": "x", "contexts": ["c"]}, r"qa\.jsonl:2: 'answers' must be a list of strings, got str"),
    ({"id": "a", "question": "q?", "answers": ["x"], "contexts": ["c"], "history": "earlier"},
     r"qa\.jsonl:2: 'history' must be a list of strings, got str; history is the earlier turns as a list"),
    ({"id": "a", "question": "q?", "answers": ["x"]}, r"qa\.jsonl:2: 'contexts' is empty; give the passage"),
    ({"question": "q?", "answers": ["x"], "contexts": ["c"]}, r"qa\.jsonl:2: the record has no \"id\""),
    ({"id": "ok", "question": "q?", "answers": ["x"], "contexts": ["c"]}, r"qa\.jsonl:2: duplicate id 'ok'"),
    ('{"id": "a", "question": ', r"qa\.jsonl:2: malformed JSON line"),
])
def test_bad_qa_records_name_file_and_line(tmp_path: Path, line: dict | str, message: str) -> None:
    f = _jsonl(tmp_path / "qa.jsonl", [{"id": "ok", "question": "q?", "answers": ["x"], "contexts": ["c"]}, line])
    with pytest.raises(RagdistillError, match=message):
        load_rag(str(f))


@pytest.mark.parametrize(("line", "message"), [
    ({"_id": "q9", "answers": ["x"]}, r"answers\.jsonl:1: query id 'q9' is not in queries\.jsonl"),
    ({"_id": "q1", "answers": []}, r"answers\.jsonl:1: 'answers' is empty"),
    ({"_id": "q1", "answers": ["x"], "history": {"q": "a"}}, r"answers\.jsonl:1: 'history' must be a list of strings, got dict"),
    ({"answers": ["x"]}, r"answers\.jsonl:1: each line needs \"_id\""),
])
def test_bad_answers_file_names_file_and_line(tmp_path: Path, line: dict, message: str) -> None:
    with pytest.raises(RagdistillError, match=message):
        load_rag(str(_beir(tmp_path / "b", [line])))


def test_canard_as_a_conversational_rag_set() -> None:
    """Every judged follow-up question keeps its history; its answer span is its document and its reference."""
    data, records = load_canard_rag("canard")
    test = records["test"]
    assert len(test) == 3915 and len(data.qrels["test"]) == 3915  # the judged test questions (docs/query_rewriter.md)
    raw = {r.id: r for r in load_rewrites("canard")["test"]}
    for r in test[:50]:
        (did,) = r.gold_doc_ids
        assert data.qrels["test"][r.id] == {did: 1} and r.answers == r.contexts == [data.corpus[did].text]
        assert r.history == raw[r.id].history and len(r.history) >= 2 and r.question == raw[r.id].question
    assert any(len(r.history) > 2 for r in test[:50])  # follow-ups with earlier turns
    assert load_retrieval("canard").corpus.keys() == data.corpus.keys()
    sliced, srecs = load_rag("canard", max_queries=5, max_docs=40)
    assert {r.id for r in srecs["test"]} == set(sliced.qrels["test"]) and len(sliced.corpus) == 40
    # ids sort in file order: a slice is the first judged questions, as the rewriter's evaluate takes them
    assert [r.id for r in srecs["test"]] == [r.id for r in test[:5]] and test[0].id == "test-0000"


def test_canard_history_that_is_not_a_list(tmp_path: Path) -> None:
    (tmp_path / "test.json").write_text(json.dumps([{"History": "Title", "Question": "q?", "Rewrite": "x"}]))
    with pytest.raises(RagdistillError, match=r"test\.json: record 0: 'History' must be a list"):
        load_rewrites(str(tmp_path))
