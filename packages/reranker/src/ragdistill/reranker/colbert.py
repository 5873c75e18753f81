"""The late-interaction (ColBERT) student, built, saved, indexed and searched with colbert-ai.

The student *is* colbert-ai's model (``colbert.modeling.colbert.ColBERT``: an encoder, here the
packaged all-MiniLM-L6-v2, plus a bias-free projection to ``dim``, L2-normalised token vectors),
encoded with colbert-ai's own tokenizers (query/document marker tokens, ``[MASK]`` query
augmentation to ``query_maxlen``, punctuation masked out of documents) and scored with its MaxSim
(``colbert_score``; Khattab & Zaharia 2020, arXiv:2004.12832). What this module adds is the
training objective: the same weighted teacher + supervised list losses as the cross-encoder
student, in a plain AdamW loop (colbert-ai's trainer reads triples files through its own launcher
and has no teacher-score normalisation).

So what training sees is what serving sees: the saved folder is a colbert-ai checkpoint
(``Checkpoint(path)``; ``artifact.metadata`` holds its ColBERT config), :class:`PlaidIndex` builds a
colbert-ai PLAID index of it (``Indexer``, CPU: ``RunConfig(nranks=1, gpus=0)``; colbert-ai's C++
extensions are compiled once per environment: ``make install`` runs :func:`compile_extensions`) and searches it with ``Searcher``: over the
whole index (a first stage) or restricted to given candidates (``pids=``, a reranker). The folder is
also a sentence-transformers model (``SentenceTransformer(path).encode(texts)`` returns the mean of
the projected token vectors, normalised; ``output_value="token_embeddings"`` the token vectors) and
its README.md is a model card saying which is which.

colbert-ai is imported lazily: importing it sets torch.multiprocessing's start method to "spawn".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ragdistill.common.errors import RagdistillError
from ragdistill.common.logging import get_logger, library_output, log_metrics
from ragdistill.common.models import resolve_model
from ragdistill.reranker.losses.base import pad_lists_differentiable

log = get_logger(__name__)
INDEX_DIR = "index"  # inside the exported ColBERT folder: colbert-ai's PLAID index
DOC_IDS_FILE = "doc_ids.json"  # the corpus id of each passage id (colbert-ai numbers passages 0..n-1)
DOC_HASHES_FILE = "doc_hashes.json"  # corpus id -> text_hash of the text indexed (a reader checks it is the same text)
MODEL_CARD = "README.md"


def text_hash(text: str) -> str:
    """A short fingerprint of a document's text: an index is used for a document only if it indexed that text."""
    import hashlib

    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def colbert_config(checkpoint: str | Path, **kw: Any) -> Any:
    """A colbert-ai ``ColBERTConfig`` for CPU use of ``checkpoint`` (no GPUs, no autocast)."""
    from colbert.infra import ColBERTConfig

    return ColBERTConfig(checkpoint=str(checkpoint), gpus=0, amp=False, **kw)


class ColbertStudent(nn.Module):
    """colbert-ai's ColBERT model with its tokenizers; ``score_lists`` is the losses' hook."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        from colbert.modeling.tokenization import DocTokenizer, QueryTokenizer

        self.model = model
        self.config = model.colbert_config
        self.query_tokenizer = QueryTokenizer(self.config, verbose=0)
        self.doc_tokenizer = DocTokenizer(self.config)

    @classmethod
    def from_encoder(cls, model: str, dim: int, query_max_length: int, doc_max_length: int, seed: int = 42) -> ColbertStudent:
        """A fresh ColBERT on a (packaged) encoder: its weights, a seeded random ``dim`` projection."""
        from colbert.modeling.colbert import ColBERT

        path = resolve_model(model)
        torch.manual_seed(seed)
        cfg = colbert_config(path, dim=int(dim), query_maxlen=int(query_max_length), doc_maxlen=int(doc_max_length))
        with library_output(__name__):  # colbert-ai prints a line per C++ extension it loads
            return cls(ColBERT(name=path, colbert_config=cfg))

    @classmethod
    def load(cls, path: str | Path) -> ColbertStudent:
        from colbert.infra import ColBERTConfig
        from colbert.modeling.colbert import ColBERT

        path = Path(path)
        if not (path / "artifact.metadata").is_file():
            raise RagdistillError(f"{path}: not a ColBERT checkpoint (no artifact.metadata); run `ragdistill reranker train` "
                                  "with reranker.train.colbert.enabled=true")
        cfg = ColBERTConfig.load_from_checkpoint(str(path))
        cfg.configure(checkpoint=str(path), gpus=0, amp=False)  # the tokenizer is read from where the folder is now
        with library_output(__name__):
            return cls(ColBERT(name=str(path), colbert_config=cfg))

    def save(self, path: str | Path, final_path: str | Path | None = None, card: dict[str, Any] | None = None) -> None:
        """A colbert-ai checkpoint that is also a sentence-transformers folder, with its model card.
        ``final_path``: where the folder will live (its ``artifact.metadata`` names it as the checkpoint)."""
        path = Path(path)
        self.config.configure(checkpoint=str(final_path or path))
        self.model.save(str(path))
        _save_sentence_transformers_view(self, path)  # writes the encoder's plain weights and config ...
        self.model.save(str(path))  # ... which colbert-ai's (the encoder + the projection) replace
        (path / MODEL_CARD).write_text(model_card(self, card or {}), encoding="utf-8")

    @property
    def dim(self) -> int:
        return int(self.config.dim)

    def encode_queries(self, queries: list[str]) -> Tensor:
        return self.model.query(*self.query_tokenizer.tensorize(list(queries)))

    def encode_docs(self, docs: list[str]) -> tuple[Tensor, Tensor]:
        return self.model.doc(*self.doc_tokenizer.tensorize(list(docs)), keep_dims="return_mask")

    def score_lists(self, queries: list[str], docs_lists: list[list[str]]) -> tuple[Tensor, Tensor]:
        """MaxSim scores of each query's list, padded (the losses' ``score_lists`` hook; differentiable)."""
        from colbert.modeling.colbert import colbert_score

        q = self.encode_queries(queries)
        d, d_mask = self.encode_docs([x for docs in docs_lists for x in docs])
        rows, start = [], 0
        for i, docs in enumerate(docs_lists):
            end = start + len(docs)
            rows.append(colbert_score(q[i : i + 1], d[start:end], d_mask[start:end], config=self.config))
            start = end
        return pad_lists_differentiable(rows)

    @torch.inference_mode()
    def score_pairs(self, query: str, docs: list[str]) -> list[float]:
        from colbert.modeling.colbert import colbert_score

        self.model.eval()
        d, d_mask = self.encode_docs(docs)
        return colbert_score(self.encode_queries([query]), d, d_mask, config=self.config).tolist()

    def memo_scorer(self, texts: dict[str, str], batch_size: int = 32) -> Any:
        """``score(query, doc_ids)`` -> MaxSim scores (as :meth:`score_pairs`), each document's token
        vectors encoded once and kept: an evaluation reranks the same paragraphs for many queries."""
        vecs: dict[str, Tensor] = {}

        @torch.inference_mode()
        def score(query: str, doc_ids: list[str]) -> list[float]:
            self.model.eval()
            todo = [d for d in dict.fromkeys(doc_ids) if d not in vecs]
            for i in range(0, len(todo), batch_size):
                chunk = todo[i : i + batch_size]
                d, mask = self.encode_docs([texts[x] for x in chunk])
                vecs.update({x: v[m.view(-1)] for x, v, m in zip(chunk, d, mask, strict=True)})
            q = self.encode_queries([query])[0]
            return [float((vecs[x] @ q.T).max(0).values.sum()) for x in doc_ids]

        return score


def _save_sentence_transformers_view(student: ColbertStudent, path: Path) -> None:
    """modules.json & co: Transformer (the encoder) -> Dense (the ColBERT projection over token
    embeddings, bias-free) -> mean Pooling -> Normalize, so ``SentenceTransformer(path).encode()``
    works (one vector: the normalised mean of the projected tokens) and ``output_value="token_embeddings"``
    gives the projected (not yet normalised) token vectors. The marker tokens and ``[MASK]`` query
    augmentation are colbert-ai's and are not applied on this path."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Dense, Normalize, Pooling, Transformer

    enc = Transformer(str(path), max_seq_length=int(student.config.doc_maxlen))  # the encoder colbert-ai just saved there
    dense = Dense(enc.get_embedding_dimension(), student.dim, bias=False, activation_function=nn.Identity(),
                  init_weight=student.model.linear.weight.detach().clone(), module_input_name="token_embeddings",
                  module_output_name="token_embeddings")
    st = SentenceTransformer(modules=[enc, dense, Pooling(student.dim, "mean"), Normalize()], device="cpu")
    st.save(str(path), create_model_card=False)


def model_card(student: ColbertStudent, card: dict[str, Any]) -> str:
    """The README.md of the exported ColBERT folder: what it is, how it was made, how to use it."""
    c = student.config
    trained = card.get("trained", {})
    lines = [
        "---", "library_name: colbert-ai", "tags: [colbert, late-interaction, reranking, ragdistill]", "---", "",
        "# ColBERT student (ragdistill reranker stage)", "",
        f"A late-interaction retrieval model in colbert-ai's format: the encoder `{card.get('base', 'all-MiniLM-L6-v2')}` "
        f"({c.doc_maxlen}-token documents, {c.query_maxlen}-token queries) with a bias-free projection to {c.dim} dimensions; "
        "each query and document token becomes one L2-normalised vector, and score(q, d) = sum over query tokens of the "
        "largest cosine with any document token (MaxSim; Khattab & Zaharia 2020).", "",
        "## How it was trained", "",
        card.get("how", "Distilled from the reranker stage's teacher scores over first-stage candidate lists."), "",
    ]
    if trained:
        lines += ["```json", json.dumps(trained, indent=2, sort_keys=True), "```", ""]
    lines += [
        "## Use it with colbert-ai (the model's ranking function)", "",
        "```python",
        "from colbert import Indexer, Searcher",
        "from colbert.infra import ColBERTConfig, Run, RunConfig",
        "from colbert.modeling.checkpoint import Checkpoint",
        "",
        "ckpt = Checkpoint(PATH, colbert_config=ColBERTConfig(gpus=0))",
        "Q = ckpt.queryFromText([\"a question\"])      # (1, query_maxlen, dim)",
        "D = ckpt.docFromText([\"a passage\"])          # (1, doc_len, dim)",
        "with Run().context(RunConfig(nranks=1, gpus=0)):",
        "    Indexer(checkpoint=PATH, config=ColBERTConfig(nbits=4, gpus=0)).index(name=\"my-index\", collection=passages)",
        "    pids, ranks, scores = Searcher(index=\"my-index\", checkpoint=PATH).search(\"a question\", k=10)",
        "```", "",
        f"`{INDEX_DIR}/` (when present) is a PLAID index built with this checkpoint; `{INDEX_DIR}/{DOC_IDS_FILE}` maps its "
        "passage ids to the corpus ids.", "",
        "## With sentence-transformers (a single-vector summary, not the ranking function)", "",
        "The folder also loads as `SentenceTransformer(PATH)`: Transformer -> Dense (the ColBERT projection, applied to every "
        "token) -> mean pooling -> normalisation. `encode(texts)` returns the normalised mean of the projected token "
        "vectors; `encode(texts, output_value=\"token_embeddings\")` the projected token vectors. colbert-ai's query/document "
        "marker tokens and [MASK] query augmentation are not applied on this path, so rank with colbert-ai.", "",
    ]
    return "\n".join(lines)


def train_colbert(student: ColbertStudent, rows: list[dict[str, Any]], loss_cfg: Any, learning_rate: float, steps: int, batch_queries: int,
                  seed: int, logging_steps: int = 10) -> list[dict[str, float]]:
    """The weighted teacher + supervised list loss (``reranker.train.loss``, the cross-encoder's) into
    the ColBERT student: a plain AdamW loop with linear warm-up/decay; returns the logged parts."""
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    from ragdistill.reranker.losses import build_loss, label_column

    loss_fn = build_loss(student, loss_cfg)
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=float(learning_rate), weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, max(1, steps // 10), steps)
    rng = np.random.default_rng(seed)
    student.train()
    history, window = [], []
    order = rng.permutation(len(rows))
    for step in tqdm(range(steps), desc="colbert training", unit="step"):
        batch = [rows[order[(step * batch_queries + j) % len(rows)]] for j in range(batch_queries)]
        parts = loss_fn([[b["query"] for b in batch], [b["docs"] for b in batch]], [torch.tensor(label_column(b)) for b in batch])
        loss = torch.stack(list(parts.values())).sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        window.append({"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in parts.items()}})
        if (step + 1) % logging_steps == 0 or step + 1 == steps:
            history.append({"step": step + 1, **{k: float(np.mean([w[k] for w in window])) for k in window[0]}})
            log_metrics({f"colbert/{k}": v for k, v in history[-1].items()})  # into the verb's wandb run, if any
            window = []
    student.eval()
    return history


@dataclass
class PlaidIndex:
    """A colbert-ai PLAID index of a collection (``<folder>``), its passage ids mapped to corpus ids."""

    folder: Path
    checkpoint: Path
    doc_ids: list[str]

    @classmethod
    def build(cls, checkpoint: str | Path, docs: dict[str, str], folder: str | Path, nbits: int = 4, kmeans_niters: int = 4,
              batch_size: int = 32) -> PlaidIndex:
        """Index ``docs`` with colbert-ai's ``Indexer`` on CPU (one process, no fork)."""
        from colbert import Indexer
        from colbert.infra import Run, RunConfig

        folder, checkpoint = Path(folder), Path(checkpoint)
        ids = list(docs)
        if not ids:
            raise RagdistillError("the ColBERT index needs at least one document")
        with library_output(__name__), Run().context(RunConfig(nranks=1, gpus=0, avoid_fork_if_possible=True, index_root=str(folder.parent))):
            cfg = colbert_config(checkpoint, nbits=int(nbits), kmeans_niters=int(kmeans_niters), index_bsize=int(batch_size))
            Indexer(checkpoint=str(checkpoint), config=cfg, verbose=0).index(name=folder.name, collection=[docs[d] for d in ids],
                                                                          overwrite="force_silent_overwrite")
        (folder / DOC_IDS_FILE).write_text(json.dumps(ids))
        (folder / DOC_HASHES_FILE).write_text(json.dumps({d: text_hash(docs[d]) for d in ids}))
        return cls(folder, checkpoint, ids)

    @classmethod
    def load(cls, folder: str | Path, checkpoint: str | Path) -> PlaidIndex:
        folder = Path(folder)
        if not (folder / DOC_IDS_FILE).is_file():
            raise RagdistillError(f"{folder}: no ColBERT PLAID index here; run `ragdistill reranker export`")
        return cls(folder, Path(checkpoint), json.loads((folder / DOC_IDS_FILE).read_text()))

    @property
    def size_mb(self) -> float:
        return sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file()) / 2**20

    def searcher(self) -> Any:
        """colbert-ai's ``Searcher`` over this index (loaded once)."""
        if getattr(self, "_searcher", None) is None:
            from colbert import Searcher
            from colbert.infra import Run, RunConfig

            # colbert-ai prints as it loads the index and its C++ extensions, here only: searches print nothing
            with library_output(__name__), Run().context(RunConfig(nranks=1, gpus=0, index_root=str(self.folder.parent))):
                self._searcher = Searcher(index=self.folder.name, index_root=str(self.folder.parent), checkpoint=str(self.checkpoint),
                                          config=colbert_config(self.checkpoint), verbose=0)
            self._pid = {d: i for i, d in enumerate(self.doc_ids)}
        return self._searcher

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """The top-``k`` of the whole index (PLAID candidate generation, then exact MaxSim on the residuals)."""
        pids, _, scores = self.searcher().search(query, k=min(k, len(self.doc_ids)))
        return [(self.doc_ids[p], float(s)) for p, s in zip(pids, scores, strict=True)]

    def rerank(self, query: str, doc_ids: list[str]) -> list[float]:
        """MaxSim of ``query`` against the indexed vectors of ``doc_ids`` (``Searcher.search(pids=...)``)."""
        searcher = self.searcher()
        missing = [d for d in doc_ids if d not in self._pid]
        if missing:
            raise RagdistillError(f"{self.folder}: {len(missing)} candidate documents are not in the ColBERT index (e.g. {missing[0]!r}); "
                                  "rerun `ragdistill reranker export` with reranker.export.colbert_index_scope=corpus or the same data")
        pids = sorted({self._pid[d] for d in doc_ids})
        got, _, scores = searcher.search(query, k=len(pids), pids=pids)
        by_pid = dict(zip(got, scores, strict=True))
        return [float(by_pid[self._pid[d]]) for d in doc_ids]

    def ids_of_texts(self, corpus: dict[str, str]) -> dict[str, str]:
        """``{text: doc id}`` for the documents of ``corpus`` this index holds with that very text (an id
        of another dataset, or a changed text, is not taken for the indexed one)."""
        f = self.folder / DOC_HASHES_FILE
        hashes = json.loads(f.read_text()) if f.is_file() else {}
        return {t: d for d, t in corpus.items() if d in hashes and hashes[d] == text_hash(t)}

    def knows(self, doc_ids: list[str]) -> bool:
        self.searcher()
        return all(d in self._pid for d in doc_ids)


def compile_extensions() -> None:
    """Build colbert-ai's C++ CPU extensions now (torch ``cpp_extension``: about 50 s each, cached per
    environment under ``~/.cache/torch_extensions``): ``make install`` runs this, so no first index,
    search or test pays it."""
    with library_output(__name__):
        from colbert.modeling.colbert import ColBERT
        from colbert.search.index_storage import IndexScorer
        from colbert.search.strided_tensor import StridedTensor

        for cls in (ColBERT, IndexScorer, StridedTensor):
            cls.try_load_torch_extensions(use_gpu=False)


if __name__ == "__main__":
    compile_extensions()
