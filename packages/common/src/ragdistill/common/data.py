"""Data schemas and loaders shared by every stage.

Retrieval data follows the BEIR layout (``corpus.jsonl``, ``queries.jsonl``, ``qrels/{split}.tsv``)
and loads from a local directory, a bundled dataset name (``scifact``, ``squad``) or a Hugging Face
``datasets`` id (``BeIR/scifact``). QA records (SQuAD) and conversational rewrite records (CANARD)
have their own small schemas. Every loader validates what it reads and names file and line on error.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import iter_jsonl, read_json
from ragdistill.common.paths import data_dir

Qrels = dict[str, dict[str, int]]  # query id -> {doc id: relevance}


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    title: str = ""

    @property
    def full_text(self) -> str:
        """Title and text joined the way BEIR evaluations embed documents."""
        return f"{self.title}. {self.text}" if self.title else self.text


@dataclass
class RetrievalData:
    """A corpus, its queries and relevance judgments per split (e.g. ``train``, ``test``)."""

    name: str
    corpus: dict[str, Document]
    queries: dict[str, str]
    qrels: dict[str, Qrels]

    def split(self, split: str) -> tuple[dict[str, str], Qrels]:
        """Queries and qrels of one split (only queries that have judgments)."""
        if split not in self.qrels:
            raise RagdistillError(
                f"dataset {self.name!r} has no split {split!r}; available: {sorted(self.qrels)}"
            )
        qrels = self.qrels[split]
        return {q: self.queries[q] for q in qrels}, qrels

    def slice(self, max_queries: int | None = None, max_docs: int | None = None, seed: int = 0) -> RetrievalData:
        """A smaller copy for fast runs: the first ``max_queries`` judged queries of each split,
        all their relevant documents, plus random other documents up to ``max_docs``."""
        rng = random.Random(seed)
        qrels: dict[str, Qrels] = {}
        for split, q in self.qrels.items():
            qids = sorted(q)[:max_queries] if max_queries else sorted(q)
            qrels[split] = {qid: q[qid] for qid in qids}
        needed = {d for q in qrels.values() for rel in q.values() for d in rel}
        others = sorted(set(self.corpus) - needed)
        rng.shuffle(others)
        n_other = max(0, (max_docs or len(self.corpus)) - len(needed))
        keep = needed | set(others[:n_other])
        corpus = {d: doc for d, doc in self.corpus.items() if d in keep}
        queries = {qid: self.queries[qid] for q in qrels.values() for qid in q}
        return RetrievalData(self.name, corpus, queries, qrels)


@dataclass
class QARecord:
    """A question with its reference answers and the passages it should be answered from."""

    id: str
    question: str
    answers: list[str]
    contexts: list[str] = field(default_factory=list)
    gold_doc_ids: list[str] = field(default_factory=list)


@dataclass
class RewriteRecord:
    """A conversational follow-up question, the turns before it and (when known) the human rewrite."""

    id: str
    history: list[str]
    question: str
    rewrite: str | None = None
    gold_doc_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ScoredPair:
    """A (query, document) pair with a teacher score."""

    query_id: str
    doc_id: str
    score: float


@dataclass(frozen=True)
class Triple:
    """A query with a positive and a (teacher-mined) negative, optionally with teacher scores."""

    query_id: str
    pos_id: str
    neg_id: str
    pos_score: float | None = None
    neg_score: float | None = None


# --------------------------------------------------------------------------------------- BEIR


def load_beir_dir(path: str | Path, name: str | None = None) -> RetrievalData:
    """Load a BEIR-layout directory, validating ids and references."""
    path = Path(path)
    if not path.is_dir():
        raise RagdistillError(f"{path}: not a directory; expected a BEIR folder with corpus.jsonl, queries.jsonl, qrels/")
    corpus_file, queries_file = path / "corpus.jsonl", path / "queries.jsonl"
    corpus: dict[str, Document] = {}
    for lineno, obj in iter_jsonl(corpus_file):
        did = _require_id(obj, corpus_file, lineno)
        if did in corpus:
            raise RagdistillError(f"{corpus_file}:{lineno}: duplicate document id {did!r}; ids must be unique")
        corpus[did] = Document(did, str(obj.get("text", "")), str(obj.get("title", "") or ""))
    if not corpus:
        raise RagdistillError(f"{corpus_file}: the corpus is empty; it needs at least one document line")
    queries: dict[str, str] = {}
    for lineno, obj in iter_jsonl(queries_file):
        qid = _require_id(obj, queries_file, lineno)
        if qid in queries:
            raise RagdistillError(f"{queries_file}:{lineno}: duplicate query id {qid!r}; ids must be unique")
        queries[qid] = str(obj.get("text", ""))
    qrels_dir = path / "qrels"
    splits = sorted(p.stem for p in qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []
    if not splits:
        raise RagdistillError(f"{qrels_dir}: no qrels/<split>.tsv files found")
    qrels = {s: read_qrels_tsv(qrels_dir / f"{s}.tsv", corpus, queries) for s in splits}
    return RetrievalData(name or path.name, corpus, queries, qrels)


def _require_id(obj: object, file: Path, lineno: int) -> str:
    if not isinstance(obj, dict) or "_id" not in obj:
        raise RagdistillError(f"{file}:{lineno}: each line needs an \"_id\" field (BEIR layout)")
    return str(obj["_id"])


def read_qrels_tsv(file: Path, corpus: dict[str, Document], queries: dict[str, str]) -> Qrels:
    """Read ``query-id<TAB>corpus-id<TAB>score`` lines; every id must exist."""
    from ragdistill.common.io import text_lines

    qrels: Qrels = {}
    for lineno, line in text_lines(file):
        row = next(csv.reader([line.rstrip("\r\n")], delimiter="\t"), [])
        if not row or (lineno == 1 and row[0] == "query-id"):
            continue
        if len(row) < 3:
            raise RagdistillError(f"{file}:{lineno}: expected 3 tab-separated columns (query-id, corpus-id, score), got {len(row)}")
        qid, did, score = row[0], row[1], row[2]
        if qid not in queries:
            raise RagdistillError(f"{file}:{lineno}: query id {qid!r} is not in queries.jsonl; add the query or drop the line")
        if did not in corpus:
            raise RagdistillError(f"{file}:{lineno}: document id {did!r} is not in corpus.jsonl; add the document or drop the line")
        try:
            rel = int(float(score))
        except ValueError:
            raise RagdistillError(f"{file}:{lineno}: score {score!r} is not a number") from None
        if rel > 0:
            qrels.setdefault(qid, {})[did] = rel
    return qrels


def load_beir_hf(hf_id: str) -> RetrievalData:
    """Load a BEIR dataset from the Hugging Face Hub (``BeIR/scifact`` + ``BeIR/scifact-qrels``)."""
    import os

    try:
        import datasets

        corpus_ds = datasets.load_dataset(hf_id, "corpus", split="corpus")
        queries_ds = datasets.load_dataset(hf_id, "queries", split="queries")
        qrels_ds = datasets.load_dataset(f"{hf_id}-qrels")
    except Exception as e:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
        raise RagdistillError(
            f"could not load dataset {hf_id!r} from the Hugging Face Hub"
            f"{' (HF_HUB_OFFLINE=1 is set)' if offline else ''}: {type(e).__name__}: {str(e)[:200]}. "
            "Without network access pass a local BEIR folder (data.path=/path/to/dir) or a bundled name (data=scifact)."
        ) from e
    corpus = {str(r["_id"]): Document(str(r["_id"]), r.get("text", ""), r.get("title", "") or "") for r in corpus_ds}
    if not corpus:
        raise RagdistillError(f"{hf_id}: the corpus is empty")
    queries = {str(r["_id"]): r["text"] for r in queries_ds}
    qrels: dict[str, Qrels] = {}
    for split, ds in qrels_ds.items():
        for r in ds:
            qid, did = str(r["query-id"]), str(r["corpus-id"])
            if qid in queries and did in corpus and int(r["score"]) > 0:
                qrels.setdefault(split, {}).setdefault(qid, {})[did] = int(r["score"])
    return RetrievalData(hf_id, corpus, queries, qrels)


# -------------------------------------------------------------------------------------- SQuAD


def squad_split_of(article_index: int) -> str:
    """Deterministic held-out split of SQuAD dev by article: every fifth article is ``test``,
    so no test paragraph's article was seen in training."""
    return "test" if article_index % 5 == 4 else "train"


def load_squad(path: str | Path) -> tuple[RetrievalData, dict[str, list[QARecord]]]:
    """SQuAD v1.1 JSON as a RAG set: paragraphs are the corpus, each question's gold paragraph
    its qrel, its answers the references. Returns retrieval data and QA records per split."""
    path = Path(path)
    raw = read_json(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), list):
        raise RagdistillError(f"{path}: not SQuAD JSON (expected a top-level 'data' list)")
    corpus: dict[str, Document] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, Qrels] = {"train": {}, "test": {}}
    records: dict[str, list[QARecord]] = {"train": [], "test": []}
    for a, article in enumerate(raw["data"]):
        split = squad_split_of(a)
        title = str(article.get("title", "")).replace("_", " ")
        for p, para in enumerate(article.get("paragraphs", [])):
            did = f"{a}-{p}"
            corpus[did] = Document(did, para["context"], title)
            for qa in para.get("qas", []):
                qid = str(qa["id"])
                if qid in queries:
                    raise RagdistillError(f"{path}: duplicate question id {qid!r}")
                answers = list(dict.fromkeys(x["text"] for x in qa.get("answers", [])))
                queries[qid] = qa["question"]
                qrels[split][qid] = {did: 1}
                records[split].append(QARecord(qid, qa["question"], answers, [para["context"]], [did]))
    if not corpus:
        raise RagdistillError(f"{path}: no paragraphs found")
    return RetrievalData("squad", corpus, queries, qrels), records


# ------------------------------------------------------------------------------------- CANARD


def load_canard(path: str | Path) -> list[RewriteRecord]:
    """CANARD JSON (``[{History, Question, Rewrite, ...}]``) as rewrite records.

    ``History`` starts with the Wikipedia title and section, then alternates question / answer.
    """
    path = Path(path)
    raw = read_json(path)
    if not isinstance(raw, list):
        raise RagdistillError(f"{path}: expected a JSON array of CANARD records")
    out = []
    for i, r in enumerate(raw):
        if not isinstance(r, dict) or not str(r.get("Question", "")).strip():
            raise RagdistillError(
                f"{path}: record {i} has no 'Question'; each conversation record needs the follow-up question"
            )
        rid = f"{r.get('QuAC_dialog_id', path.stem)}#{r.get('Question_no', i)}" if "QuAC_dialog_id" in r else f"{path.stem}-{i}"
        out.append(RewriteRecord(rid, [str(h) for h in r.get("History", [])], str(r["Question"]), r.get("Rewrite")))
    return out


# ------------------------------------------------------------------------------ by name or path

BUNDLED = {"scifact": "scifact", "squad": "squad/dev-v1.1.json", "canard": "canard"}


def load_retrieval(path_or_name: str, max_queries: int | None = None, max_docs: int | None = None) -> RetrievalData:
    """Retrieval data by bundled name (``scifact``, ``squad``), local BEIR folder or HF id."""
    p = Path(path_or_name)
    if path_or_name in BUNDLED:
        p = data_dir() / BUNDLED[path_or_name]
        if not p.exists():
            raise RagdistillError(
                f"bundled dataset {path_or_name!r} not found at {p}; set RAGDISTILL_DATA to the folder holding it"
            )
    if p.is_file() and p.suffix == ".json":
        data = load_squad(p)[0]
    elif p.is_dir():
        data = load_beir_dir(p, name=path_or_name if path_or_name in BUNDLED else None)
    elif "/" in path_or_name and not p.exists() and not path_or_name.startswith((".", "/")):
        data = load_beir_hf(path_or_name)
    else:
        raise RagdistillError(
            f"{path_or_name}: no such dataset; use a bundled name ({', '.join(BUNDLED)}), a BEIR folder or a HF id"
        )
    if max_queries or max_docs:
        data = data.slice(max_queries, max_docs)
    return data


def load_qa(path_or_name: str = "squad") -> dict[str, list[QARecord]]:
    """QA records per split: bundled ``squad`` or a SQuAD-format JSON file."""
    p = data_dir() / BUNDLED["squad"] if path_or_name == "squad" else Path(path_or_name)
    return load_squad(p)[1]


def load_rewrites(path_or_name: str = "canard") -> dict[str, list[RewriteRecord]]:
    """Rewrite records per split: bundled ``canard`` (dev -> train, test -> test) or a folder of
    CANARD-format ``<split>.json`` files."""
    p = data_dir() / BUNDLED["canard"] if path_or_name == "canard" else Path(path_or_name)
    if not p.is_dir():
        raise RagdistillError(f"{p}: expected a folder of CANARD-format <split>.json files")
    files = {"train": p / "dev.json", "test": p / "test.json"} if path_or_name == "canard" else {
        f.stem: f for f in sorted(p.glob("*.json"))
    }
    return {split: load_canard(f) for split, f in files.items()}


def doc_texts(corpus: dict[str, Document], ids: Iterable[str]) -> list[str]:
    return [corpus[i].full_text for i in ids]
