"""The late-interaction (ColBERT) student: token embeddings + MaxSim, distilled with listwise KL.

Why not colbert-ai or PyLate: PyLate cannot be installed beside torch 2.13 here, and colbert-ai
0.2.22 trains through its own multi-process launcher, compiles a C++ extension on first index and
pins a transformers API window (shared/STACK.md); on 2 shared CPU cores that is more cost than a
student worth ~100 lines. So the student is built the way PyLate builds one, on
sentence-transformers modules: ``Transformer`` -> ``Dense(hidden -> dim, no bias)`` over
*token* embeddings, L2-normalised; score(q, d) = sum over query tokens of the max cosine over
document tokens (Khattab & Zaharia 2020, "ColBERT", arXiv:2004.12832). It saves as a plain
sentence-transformers folder (``SentenceTransformer(path).encode(..., output_value="token_embeddings")``
gives the projected vectors), and its index is the documents' token vectors precomputed once
(fp16 matrix + offsets), so reranking at query time costs one short query encoding and MaxSim.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ragdistill.common.logging import log_metrics
from ragdistill.common.models import resolve_model
from ragdistill.reranker.losses.base import pad_lists_differentiable

QUERY_PREFIX, DOC_PREFIX = "[Q] ", "[D] "
INDEX_FILES = ("index_vectors.npy", "index_offsets.npy", "index_doc_ids.json")


class ColbertStudent(nn.Module):
    """A sentence-transformers model emitting normalised per-token vectors; MaxSim scoring."""

    def __init__(self, st_model: Any, query_max_length: int = 32, doc_max_length: int = 128) -> None:
        super().__init__()
        self.st = st_model
        self.query_max_length, self.doc_max_length = query_max_length, doc_max_length

    @classmethod
    def from_encoder(cls, model: str, dim: int, query_max_length: int, doc_max_length: int, seed: int = 42) -> ColbertStudent:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.models import Dense, Transformer

        torch.manual_seed(seed)
        tr = Transformer(resolve_model(model), max_seq_length=doc_max_length)
        hidden = tr.get_word_embedding_dimension()
        dense = Dense(hidden, dim, bias=False, activation_function=None, module_input_name="token_embeddings")
        return cls(SentenceTransformer(modules=[tr, dense], device="cpu"), query_max_length, doc_max_length)

    @classmethod
    def load(cls, path: str | Path) -> ColbertStudent:
        from sentence_transformers import SentenceTransformer

        meta = json.loads((Path(path) / "colbert_config.json").read_text())
        return cls(SentenceTransformer(str(path), device="cpu"), meta["query_max_length"], meta["doc_max_length"])

    def save(self, path: str | Path) -> None:
        self.st.save(str(path))
        (Path(path) / "colbert_config.json").write_text(json.dumps({
            "query_max_length": self.query_max_length, "doc_max_length": self.doc_max_length,
            "query_prefix": QUERY_PREFIX, "document_prefix": DOC_PREFIX, "similarity": "maxsim",
            "dim": self.st[1].out_features,
        }, indent=2))

    def encode_tokens(self, texts: list[str], is_query: bool) -> tuple[Tensor, Tensor]:
        """(batch, len, dim) normalised token vectors and the attention mask."""
        self.st[0].max_seq_length = self.query_max_length if is_query else self.doc_max_length
        prefix = QUERY_PREFIX if is_query else DOC_PREFIX
        feats = self.st.preprocess([prefix + t for t in texts])
        feats = {k: v.to(self.st.device) if hasattr(v, "to") else v for k, v in feats.items()}
        out = self.st(feats)
        vecs = torch.nn.functional.normalize(out["token_embeddings"], dim=-1)
        return vecs, feats["attention_mask"].bool()

    @staticmethod
    def maxsim(q: Tensor, q_mask: Tensor, d: Tensor, d_mask: Tensor) -> Tensor:
        """Scores of one query (``q``: len_q x dim) against ``d`` (n x len_d x dim)."""
        sim = torch.einsum("qh,ndh->nqd", q, d).masked_fill(~d_mask[:, None, :], -1e4)
        return (sim.max(-1).values * q_mask[None, :].float()).sum(-1)

    def score_lists(self, queries: list[str], docs_lists: list[list[str]]) -> tuple[Tensor, Tensor]:
        """Training-time scores for each query's list (the losses' ``score_lists`` hook)."""
        qv, qm = self.encode_tokens(queries, is_query=True)
        flat = [d for docs in docs_lists for d in docs]
        dv, dm = self.encode_tokens(flat, is_query=False)
        rows, start = [], 0
        for i, docs in enumerate(docs_lists):
            rows.append(self.maxsim(qv[i], qm[i], dv[start : start + len(docs)], dm[start : start + len(docs)]))
            start += len(docs)
        return pad_lists_differentiable(rows)

    @torch.inference_mode()
    def score_pairs(self, query: str, docs: list[str]) -> list[float]:
        qv, qm = self.encode_tokens([query], is_query=True)
        dv, dm = self.encode_tokens(docs, is_query=False)
        return self.maxsim(qv[0], qm[0], dv, dm).tolist()


@dataclass
class ColbertIndex:
    """Precomputed document token vectors (fp16), one contiguous matrix plus offsets."""

    vectors: np.ndarray
    offsets: np.ndarray  # doc i's vectors are vectors[offsets[i]:offsets[i+1]]
    doc_ids: list[str]

    @classmethod
    @torch.inference_mode()
    def build(cls, student: ColbertStudent, docs: dict[str, str], batch_size: int = 32) -> ColbertIndex:
        from tqdm.auto import tqdm

        ids = list(docs)
        chunks, offsets = [], [0]
        for i in tqdm(range(0, len(ids), batch_size), desc="colbert index", unit="batch"):
            v, m = student.encode_tokens([docs[d] for d in ids[i : i + batch_size]], is_query=False)
            for row, mask in zip(v, m, strict=True):
                chunks.append(row[mask].cpu().numpy().astype(np.float16))
                offsets.append(offsets[-1] + int(mask.sum()))
        return cls(np.concatenate(chunks), np.asarray(offsets, dtype=np.int64), ids)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        np.save(path / INDEX_FILES[0], self.vectors)
        np.save(path / INDEX_FILES[1], self.offsets)
        (path / INDEX_FILES[2]).write_text(json.dumps(self.doc_ids))

    @classmethod
    def load(cls, path: str | Path) -> ColbertIndex:
        path = Path(path)
        return cls(np.load(path / INDEX_FILES[0]), np.load(path / INDEX_FILES[1]), json.loads((path / INDEX_FILES[2]).read_text()))

    @property
    def size_mb(self) -> float:
        return (self.vectors.nbytes + self.offsets.nbytes) / 2**20

    def scorer(self, student: ColbertStudent) -> Any:
        """``score(query, doc_ids)``: encode the query, MaxSim against the stored vectors."""
        pos = {d: i for i, d in enumerate(self.doc_ids)}

        @torch.inference_mode()
        def score(query: str, doc_ids: list[str]) -> list[float]:
            qv, qm = student.encode_tokens([query], is_query=True)
            q = qv[0][qm[0]].float().numpy()
            out = []
            for d in doc_ids:
                i = pos[d]
                dv = self.vectors[self.offsets[i] : self.offsets[i + 1]].astype(np.float32)
                out.append(float((q @ dv.T).max(-1).sum()))
            return out

        return score


def train_colbert(student: ColbertStudent, rows: list[dict[str, Any]], cfg: Any, steps: int, batch_queries: int, seed: int,
                  teacher_norm: str = "none") -> list[float]:
    """Distil listwise KL over the candidate lists into the ColBERT student (a plain AdamW loop:
    the sentence-transformers trainers have no multi-vector list input)."""
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    from ragdistill.reranker.losses import ListwiseKLLoss

    loss_fn = ListwiseKLLoss(student, temperature=float(cfg.temperature), teacher_norm=teacher_norm)
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=float(cfg.learning_rate), weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, max(1, steps // 10), steps)
    rng = np.random.default_rng(seed)
    student.train()
    losses = []
    order = rng.permutation(len(rows))
    for step in tqdm(range(steps), desc="colbert distillation", unit="step"):
        idx = [order[(step * batch_queries + j) % len(rows)] for j in range(batch_queries)]
        batch = [rows[i] for i in idx]
        loss = loss_fn([[b["query"] for b in batch], [b["docs"] for b in batch]], [torch.tensor(b["scores"]) for b in batch])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
        log_metrics({"colbert/loss": losses[-1], "colbert/step": step + 1})  # into the verb's wandb run, if any
    student.eval()
    return losses
