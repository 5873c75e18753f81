"""Loaders on the bundled data (counts from the dataset cards) and every bad-input message."""

from __future__ import annotations

import json

import pytest

from ragdistill.common.data import load_beir_dir, load_qa, load_retrieval, load_rewrites
from ragdistill.common.errors import RagdistillError


def test_scifact_counts_match_the_dataset_card():
    d = load_retrieval("scifact")
    assert len(d.corpus) == 5183
    train_q, train_rel = d.split("train")
    test_q, test_rel = d.split("test")
    assert (len(train_q), sum(len(r) for r in train_rel.values())) == (809, 919)
    assert (len(test_q), sum(len(r) for r in test_rel.values())) == (300, 339)
    assert not set(train_q) & set(test_q)


def test_squad_counts_and_split_by_article():
    d = load_retrieval("squad")
    assert len(d.corpus) == 2067
    assert len(d.queries) == 10570
    qa = load_qa("squad")
    assert len(qa["train"]) + len(qa["test"]) == 10570
    train_docs = {i for r in qa["train"] for i in r.gold_doc_ids}
    test_docs = {i for r in qa["test"] for i in r.gold_doc_ids}
    assert not train_docs & test_docs  # held-out articles
    r = qa["test"][0]
    assert r.answers and r.contexts[0] == d.corpus[r.gold_doc_ids[0]].text


def test_canard_counts():
    rw = load_rewrites("canard")
    assert (len(rw["train"]), len(rw["test"])) == (3430, 5571)
    assert rw["train"][0].rewrite and rw["train"][0].history


def test_slice_keeps_relevant_docs():
    d = load_retrieval("scifact", max_queries=10, max_docs=100)
    assert len(d.corpus) == 100
    for qrels in d.qrels.values():
        assert len(qrels) == 10
        assert all(doc in d.corpus for rel in qrels.values() for doc in rel)


def _beir(tmp_path, corpus, queries, qrels):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text(corpus)
    (tmp_path / "queries.jsonl").write_text(queries)
    (tmp_path / "qrels" / "test.tsv").write_text(qrels)
    return tmp_path


GOOD_C = '{"_id": "d1", "title": "T", "text": "x"}\n{"_id": "d2", "text": "y"}\n'
GOOD_Q = '{"_id": "q1", "text": "what"}\n'
GOOD_R = "query-id\tcorpus-id\tscore\nq1\td1\t1\n"


def test_valid_beir_dir_loads(tmp_path):
    d = load_beir_dir(_beir(tmp_path, GOOD_C, GOOD_Q, GOOD_R))
    assert d.qrels == {"test": {"q1": {"d1": 1}}}
    assert d.corpus["d1"].full_text == "T. x"


@pytest.mark.parametrize(
    ("corpus", "queries", "qrels", "message"),
    [
        ('{"_id": "d1", "text": "x"}\n{"_id": "d2", "text": \n', GOOD_Q, GOOD_R, r"corpus\.jsonl:2: malformed JSON line"),
        ("", GOOD_Q, GOOD_R, r"corpus\.jsonl: the corpus is empty"),
        (GOOD_C + '{"_id": "d1", "text": "z"}\n', GOOD_Q, GOOD_R, r"corpus\.jsonl:3: duplicate document id 'd1'"),
        ('{"text": "no id"}\n', GOOD_Q, GOOD_R, r"corpus\.jsonl:1: each line needs an \"_id\""),
        (GOOD_C, GOOD_Q, "query-id\tcorpus-id\tscore\nq1\td9\t1\n", r"test\.tsv:2: document id 'd9' is not in corpus\.jsonl"),
        (GOOD_C, GOOD_Q, "q7\td1\t1\n", r"test\.tsv:1: query id 'q7' is not in queries\.jsonl"),
        (GOOD_C, GOOD_Q + '{"_id": "q1", "text": "again"}\n', GOOD_R, r"queries\.jsonl:2: duplicate query id 'q1'"),
    ],
)
def test_bad_beir_input_names_file_and_line(tmp_path, corpus, queries, qrels, message):
    with pytest.raises(RagdistillError, match=message):
        load_beir_dir(_beir(tmp_path, corpus, queries, qrels))


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(RagdistillError, match=r"could not load dataset 'BeIR/nfcorpus'.*local BEIR folder"):
        load_retrieval("BeIR/nfcorpus")


def test_canard_record_without_question(tmp_path):
    f = tmp_path / "test.json"
    f.write_text(json.dumps([{"History": ["a", "b"], "Question": "", "Rewrite": "x"}]))
    with pytest.raises(RagdistillError, match=r"test\.json: record 0 has no 'Question'"):
        load_rewrites(str(tmp_path))
