"""The ColBERT student's folder is a colbert-ai checkpoint: loaded, indexed (PLAID, CPU) and searched
with colbert-ai's own API, and also a sentence-transformers folder whose default encode() works.

The model is the stage's ColBERT student before training (the packaged all-MiniLM-L6-v2 encoder and
a seeded 128-d projection), saved the way train and export save it; the corpus is 24 SQuAD test
paragraphs and the queries are questions whose gold paragraph is one of them.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from ragdistill.common.data import load_retrieval
    from ragdistill.reranker.colbert import ColbertStudent

    folder = tmp_path_factory.mktemp("colbert") / "colbert"
    ColbertStudent.from_encoder("minilm-l6", 128, 32, 180, seed=42).save(folder, card={"base": "minilm-l6", "how": "Not trained (test)."})
    data = load_retrieval("squad", max_queries=400)
    queries, qrels = data.split("test")
    gold = [next(iter(qrels[q])) for q in sorted(queries)]
    passages = list(dict.fromkeys(gold))[:24]
    asked = [(queries[q], next(iter(qrels[q]))) for q in sorted(queries) if next(iter(qrels[q])) in passages][:12]
    return folder, passages, {d: data.corpus[d].full_text for d in passages}, asked


def test_colbert_ai_indexes_and_searches_the_saved_student(saved):
    from colbert import Indexer, Searcher
    from colbert.infra import ColBERTConfig, Run, RunConfig
    from colbert.modeling.checkpoint import Checkpoint

    folder, passages, texts, asked = saved
    ckpt = Checkpoint(str(folder), colbert_config=ColBERTConfig(gpus=0))  # colbert-ai's own loader
    assert ckpt.colbert_config.dim == 128 and tuple(ckpt.queryFromText(["who?"]).shape) == (1, 32, 128)
    root = folder.parent / "indexes"
    with Run().context(RunConfig(nranks=1, gpus=0, avoid_fork_if_possible=True, index_root=str(root))):
        Indexer(checkpoint=str(folder), config=ColBERTConfig(nbits=2, gpus=0, kmeans_niters=4), verbose=0).index(
            name="squad24", collection=[texts[d] for d in passages], overwrite=True)
        searcher = Searcher(index="squad24", index_root=str(root), checkpoint=str(folder), config=ColBERTConfig(gpus=0), verbose=0)
        ranks = []
        for question, gold in asked:
            pids, _, scores = searcher.search(question, k=len(passages))
            assert list(scores) == sorted(scores, reverse=True)
            ranks.append(1 + [passages[p] for p in pids].index(gold))
    # sensible ranks, even untrained: the gold paragraph of a question is near the top of 24 (random: mean rank
    # 12.5; measured 4.7 over these 12 questions)
    assert np.mean(ranks) < 6.25 and np.median(ranks) <= 5, ranks


def test_the_folder_is_a_sentence_transformer_and_says_what_it_holds(saved):
    from sentence_transformers import SentenceTransformer

    folder, passages, texts, _ = saved
    st = SentenceTransformer(str(folder), device="cpu")
    vecs = st.encode([texts[d] for d in passages[:3]])  # the default output: KeyError 'sentence_embedding' before
    assert vecs.shape == (3, 128) and np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    tokens = st.encode(texts[passages[0]], output_value="token_embeddings")
    assert tokens.shape[1] == 128 and tokens.shape[0] > 10
    card = (folder / "README.md").read_text()
    assert "library_name: colbert-ai" in card and "MaxSim" in card and "128 dimensions" in card and "Not trained (test)." in card
