"""First-stage candidates: BM25 on the bundled data, and bad candidate files named precisely."""

from __future__ import annotations

import json

import pytest

from ragdistill.common.bm25 import BM25Index
from ragdistill.common.data import load_retrieval
from ragdistill.common.errors import RagdistillError
from ragdistill.reranker.candidates import first_stage
from ragdistill.reranker.lists import positive_first


@pytest.fixture(scope="module")
def squad():
    return load_retrieval("squad", max_queries=20)


def test_bm25_finds_gold_paragraphs(squad):
    cands = first_stage(squad, "test", k=10)
    _, qrels = squad.split("test")
    assert set(cands) == set(qrels)
    assert all(len(c.doc_ids) == 10 and c.scores == sorted(c.scores, reverse=True) for c in cands.values())
    hit = sum(any(d in qrels[q] for d in c.doc_ids) for q, c in cands.items()) / len(cands)
    assert hit >= 0.7  # SQuAD questions share words with their paragraph


def test_positive_first_moves_or_prepends():
    from ragdistill.reranker.candidates import CandidateList

    c = CandidateList("q", ["a", "b", "c"], [3.0, 2.0, 1.0])
    assert positive_first(c, {"c": 1}, True).doc_ids == ["c", "a", "b"]
    assert positive_first(c, {"z": 1}, True).doc_ids == ["z", "a", "b"]
    assert positive_first(c, {"z": 1}, False) is None


def _write(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_candidate_file_with_unknown_doc_id(tmp_path, squad):
    q = sorted(squad.split("train")[0])[0]
    f = _write(tmp_path / "cands.jsonl", [{"query_id": q, "doc_ids": [next(iter(squad.corpus))]},
                                         {"query_id": q, "doc_ids": ["no-such-doc"]}])
    with pytest.raises(RagdistillError, match=r"cands.jsonl:2: query .* names 1 document id\(s\) not in the corpus \(first: 'no-such-doc'\)"):
        first_stage(squad, "train", 5, file=str(f), require_positive=True)


def test_candidate_file_query_without_positive(tmp_path, squad):
    unjudged = "unjudged-q"
    squad.queries[unjudged] = "a question nobody judged"
    f = _write(tmp_path / "cands.jsonl", [{"query_id": unjudged, "doc_ids": [next(iter(squad.corpus))]}])
    with pytest.raises(RagdistillError, match=r"cands.jsonl:1: query 'unjudged-q' has no positive document in the qrels; add a judgment \(qrels/train.tsv"):
        first_stage(squad, "train", 5, file=str(f), require_positive=True)


def test_candidate_file_unknown_query_and_bad_line(tmp_path, squad):
    f = _write(tmp_path / "c.jsonl", [{"query_id": "nope", "doc_ids": []}])
    with pytest.raises(RagdistillError, match=r"c.jsonl:1: query id 'nope' is not in the dataset"):
        first_stage(squad, "train", 5, file=str(f))
    f = _write(tmp_path / "d.jsonl", [{"qid": "x"}])
    with pytest.raises(RagdistillError, match=r"d.jsonl:1: each line needs \"query_id\" and a \"doc_ids\" list"):
        first_stage(squad, "train", 5, file=str(f))


def test_candidate_file_is_used(tmp_path, squad):
    queries, qrels = squad.split("train")
    q = sorted(queries)[0]
    docs = [*qrels[q], *[d for d in list(squad.corpus)[:3] if d not in qrels[q]]]
    f = _write(tmp_path / "c.jsonl", [{"query_id": q, "doc_ids": docs}])
    cands = first_stage(squad, "train", 2, file=str(f), require_positive=True)
    assert list(cands) == [q] and cands[q].doc_ids == docs[:2]


def test_bm25_on_empty_corpus():
    with pytest.raises(RagdistillError, match="non-empty corpus"):
        BM25Index({})
