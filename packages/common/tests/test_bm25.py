"""The shared BM25 index and the BM25 scoring teacher, on the bundled SQuAD paragraphs."""

import pytest

from ragdistill.common.bm25 import BM25Index
from ragdistill.common.data import load_retrieval
from ragdistill.common.errors import RagdistillError
from ragdistill.common.teachers import ScoringTeacher, build_teacher, require


@pytest.fixture(scope="module")
def squad():
    return load_retrieval("squad")


def test_pair_scores_equal_search_scores(squad):
    index = BM25Index(squad.corpus)
    queries, _ = squad.split("test")
    qid = sorted(queries)[0]
    hits = index.retrieve([queries[qid]], 10)[0]
    assert len(hits) == 10 and [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    assert index.scores(queries[qid], [d for d, _ in hits]) == pytest.approx([s for _, s in hits], rel=1e-5)
    run = index.search({qid: queries[qid]}, 10)
    assert set(run[qid]) <= {d for d, _ in hits} and all(s > 0 for s in run[qid].values())
    assert index.retrieve([""], 3)[0] and all(s == 0 for _, s in index.retrieve([""], 3)[0])
    with pytest.raises(RagdistillError, match="not in the indexed corpus"):
        index.scores("who", ["no-such-doc"])


def test_bm25_teacher_scores_corpus_documents_and_names_the_fix_otherwise(squad):
    teacher = require(build_teacher({"backend": "bm25", "model": "squad"}), ScoringTeacher, "reranker")
    assert teacher.teacher_id == "bm25:squad"
    queries, qrels = squad.split("test")
    qid = sorted(queries)[0]
    gold = next(iter(qrels[qid]))
    other = next(d for d in squad.corpus if d not in qrels[qid])
    s_gold, s_other = teacher.score([(queries[qid], squad.corpus[gold].full_text), (queries[qid], squad.corpus[other].full_text)])
    assert s_gold > s_other >= 0
    with pytest.raises(RagdistillError, match=r"not in that corpus .* leave it empty: it follows data.path/data.name"):
        teacher.score([("q", "a paragraph from somewhere else")])
