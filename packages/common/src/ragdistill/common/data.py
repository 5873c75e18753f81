"""Data schemas and loaders shared by every stage.

Retrieval data follows the BEIR layout (``corpus.jsonl``, ``queries.jsonl``, ``qrels/{split}.tsv``)
and loads from a local directory, a bundled dataset name (``scifact``, ``squad``, ``canard``) or a
Hugging Face ``datasets`` id (``BeIR/scifact``). A RAG set (retrieval data plus QA records with
reference answers, optionally a conversation ``history``) loads through :func:`load_rag` from SQuAD
JSON, generic QA JSONL (``{"id", "question", "answers", "contexts", "history"?, "split"?}``), a BEIR
folder with an ``answers.jsonl``, or CANARD (each follow-up question, its history, and the answer
span that answers it as its passage and reference). Every loader validates what it reads and names
file and line on error.
"""

from __future__ import annotations

import csv
import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
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
            raise RagdistillError(missing_split(self.name, split, sorted(self.qrels)))
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
    history: list[str] = field(default_factory=list)  # earlier turns of a conversation (CANARD: title, section, q1, a1, ...)


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


def missing_split(source: str, split: str, available: list[str]) -> str:
    """The message for a split the data lacks: which verbs need it and the two ways out."""
    role = ("verbs that train (teach, train) read it: data.train_split" if split == "train"
            else "every verb evaluates on it: data.test_split" if split == "test" else "data.train_split / data.test_split")
    return (f"dataset {source!r} has no split {split!r} (available: {available}); {role}. Add that split (BEIR: "
            f"qrels/{split}.tsv; QA JSONL: \"split\": \"{split}\" on records) or point the setting at an available split. "
            "Verbs that only evaluate (evaluate, calibrate, e2e) need the test split alone.")


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


# ----------------------------------------------------------------------------- generic QA records


def _str_list(obj: dict, key: str, file: Path, lineno: int, fix: str, allow_empty: bool = True) -> list[str]:
    """``obj[key]`` as a list of strings; anything else is an error naming file:line and the fix."""
    v = obj.get(key, [])
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise RagdistillError(f"{file}:{lineno}: {key!r} must be a list of strings, got {type(v).__name__}; {fix}")
    if not allow_empty and not [x for x in v if x.strip()]:
        raise RagdistillError(f"{file}:{lineno}: {key!r} is empty; {fix}")
    return [x for x in v if x.strip()] if not allow_empty else v


def context_doc_id(text: str) -> str:
    """A passage's document id in a QA JSONL corpus: the hash of its text, so the same passage under
    several questions is one document, and ids stay put when records are added or reordered."""
    return "ctx-" + hashlib.sha1(" ".join(text.split()).encode()).hexdigest()[:16]


def load_qa_jsonl(path: str | Path) -> tuple[RetrievalData, dict[str, list[QARecord]]]:
    """Generic QA JSONL, one record a line::

        {"id": "q1", "question": "...", "answers": ["..."], "contexts": ["passage", ...],
         "history": ["earlier question", "its answer", ...], "split": "test"}

    ``history`` (a conversation's earlier turns) and ``split`` (default ``test``) are optional. The
    contexts of all records are the corpus (one document per distinct passage); a record's own
    contexts are its relevant documents."""
    path = Path(path)
    corpus: dict[str, Document] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, Qrels] = {}
    records: dict[str, list[QARecord]] = {}
    for lineno, obj in iter_jsonl(path):
        if not isinstance(obj, dict):
            raise RagdistillError(f"{path}:{lineno}: each line must be a JSON object with \"id\", \"question\", \"answers\", \"contexts\"")
        rid = str(obj.get("id", "")).strip()
        if not rid:
            raise RagdistillError(f"{path}:{lineno}: the record has no \"id\"; give every record a unique id")
        if rid in queries:
            raise RagdistillError(f"{path}:{lineno}: duplicate id {rid!r}; ids must be unique")
        question = obj.get("question")
        if not isinstance(question, str) or not question.strip():
            raise RagdistillError(f"{path}:{lineno}: record {rid!r} has no \"question\"; each record needs the question text")
        answers = _str_list(obj, "answers", path, lineno, "give at least one reference answer, e.g. \"answers\": [\"Paris\"]", allow_empty=False)
        contexts = _str_list(obj, "contexts", path, lineno, "give the passage(s) the question is answered from", allow_empty=False)
        history = _str_list(obj, "history", path, lineno, "history is the earlier turns as a list, e.g. [\"first question\", \"its answer\"]")
        split = str(obj.get("split", "test"))
        gold = []
        for c in contexts:
            did = context_doc_id(c)
            corpus.setdefault(did, Document(did, " ".join(c.split())))
            gold.append(did)
        gold = list(dict.fromkeys(gold))
        queries[rid] = question
        qrels.setdefault(split, {})[rid] = {d: 1 for d in gold}
        records.setdefault(split, []).append(QARecord(rid, question, answers, contexts, gold, history))
    if not queries:
        raise RagdistillError(f"{path}: no QA records; each line needs {{\"id\", \"question\", \"answers\": [...], \"contexts\": [...]}}")
    return RetrievalData(path.stem, corpus, queries, qrels), records


ANSWERS_FILE = "answers.jsonl"


def load_beir_qa(path: str | Path, name: str | None = None) -> tuple[RetrievalData, dict[str, list[QARecord]]]:
    """A BEIR folder plus ``answers.jsonl`` (``{"_id": <query id>, "answers": [...], "history"?: [...]}``
    a line): the QA records of each split are its judged queries that have answers, their relevant
    documents the contexts."""
    data = load_beir_dir(path, name)
    file = Path(path) / ANSWERS_FILE
    if not file.is_file():
        raise RagdistillError(f"{file}: not found; a BEIR folder answers questions only with {ANSWERS_FILE} beside queries.jsonl, "
                              "one {\"_id\": <query id>, \"answers\": [\"...\"]} a line")
    answers: dict[str, tuple[list[str], list[str]]] = {}
    for lineno, obj in iter_jsonl(file):
        qid = str(obj.get("_id", obj.get("id", ""))) if isinstance(obj, dict) else ""
        if not qid:
            raise RagdistillError(f"{file}:{lineno}: each line needs \"_id\" (the query id in queries.jsonl) and \"answers\"")
        if qid not in data.queries:
            raise RagdistillError(f"{file}:{lineno}: query id {qid!r} is not in queries.jsonl; add the query or drop the line")
        if qid in answers:
            raise RagdistillError(f"{file}:{lineno}: duplicate query id {qid!r}; one line per query")
        answers[qid] = (_str_list(obj, "answers", file, lineno, "give at least one reference answer", allow_empty=False),
                        _str_list(obj, "history", file, lineno, "history is the earlier turns as a list of strings"))
    records = {split: [QARecord(q, data.queries[q], answers[q][0], doc_texts(data.corpus, rel), list(rel), answers[q][1])
                       for q, rel in qrels.items() if q in answers] for split, qrels in data.qrels.items()}
    return data, records


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
    width = len(str(max(0, len(raw) - 1)))  # zero-padded ids sort in file order, so a slice keeps whole dialogs, in order
    for i, r in enumerate(raw):
        if not isinstance(r, dict) or not str(r.get("Question", "")).strip():
            raise RagdistillError(
                f"{path}: record {i} has no 'Question'; each conversation record needs the follow-up question"
            )
        if not isinstance(r.get("History", []), list):
            raise RagdistillError(f"{path}: record {i}: 'History' must be a list (title, section, then question / answer turns)")
        rid = f"{r.get('QuAC_dialog_id', path.stem)}#{r.get('Question_no', i)}" if "QuAC_dialog_id" in r else f"{path.stem}-{i:0{width}d}"
        out.append(RewriteRecord(rid, [str(h) for h in r.get("History", [])], str(r["Question"]), r.get("Rewrite")))
    return out


# CANARD ships no passages, but each record's ``History`` ends with the answer to the previous
# question of the same dialog. Two consecutive records belong to one dialog when the later history is
# the earlier one plus (the earlier question, its answer): ``h[j] == h[i] + [q_i, a_i]``. That rule
# needs no dialog id, so it works on the test split, which has none. The answer spans (taken from the
# Wikipedia section being discussed) are the corpus; each question's own answer span is its one
# relevant document and its reference answer. Unanswerable turns (QuAC's ``I don't know.``) and the
# last question of each dialog (its answer is never shown) are left out. Identical span texts are
# merged into one document, since no retriever can tell them apart.

NO_ANSWER = {"i don't know.", "cannotanswer"}


def answer_spans(records: list[RewriteRecord]) -> dict[int, str]:
    """Index of a record -> the answer to its question, read from the next record of its dialog."""
    spans: dict[int, str] = {}
    for i in range(len(records) - 1):
        h, nxt = records[i].history, records[i + 1].history
        if len(nxt) == len(h) + 2 and nxt[: len(h)] == h and nxt[-2].strip() == records[i].question.strip():
            spans[i] = nxt[-1]
    return spans


def derive_answer_corpus(records: list[RewriteRecord], split: str = "test", name: str = "canard") -> tuple[RetrievalData, list[RewriteRecord]]:
    """(the answer-span corpus with one qrel per answerable question, those records with
    ``gold_doc_ids`` set). Query ids are the record ids."""
    if not records:
        raise RagdistillError(f"{name}/{split}: no CANARD records to derive a corpus from")
    corpus: dict[str, Document] = {}
    by_text: dict[str, str] = {}
    queries: dict[str, str] = {}
    qrels: Qrels = {}
    judged: list[RewriteRecord] = []
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise RagdistillError(f"{name}/{split}: record ids are not unique; each CANARD record needs its own id")
    for i, span in answer_spans(records).items():
        text = " ".join(span.split())
        if not text or text.lower() in NO_ANSWER:
            continue
        did = by_text.get(text)
        if did is None:
            did = by_text[text] = f"{records[i].id}:answer"
            corpus[did] = Document(did, text)
        rec = records[i]
        queries[rec.id] = rec.question
        qrels[rec.id] = {did: 1}
        judged.append(replace(rec, gold_doc_ids=[did]))
    if not corpus:
        raise RagdistillError(
            f"{name}/{split}: no answer spans found; consecutive records of one dialog must extend the history "
            "by (previous question, its answer), as CANARD's do"
        )
    return RetrievalData(f"{name}-{split}-answers", corpus, queries, {split: qrels}), judged


def load_canard_rag(path_or_name: str = "canard") -> tuple[RetrievalData, dict[str, list[QARecord]]]:
    """CANARD as a conversational RAG set: per split, each answerable follow-up question with its
    history, its answer span as relevant document and reference answer. The corpus is the answer
    spans of every split (the other split's spans are distractors from other dialogs)."""
    corpus: dict[str, Document] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, Qrels] = {}
    records: dict[str, list[QARecord]] = {}
    for split, recs in load_rewrites(path_or_name).items():
        data, judged = derive_answer_corpus(recs, split, name=Path(path_or_name).name)
        corpus.update(data.corpus)
        queries.update(data.queries)
        qrels[split] = data.qrels[split]
        records[split] = [QARecord(r.id, r.question, [data.corpus[r.gold_doc_ids[0]].text], [data.corpus[r.gold_doc_ids[0]].text],
                                   list(r.gold_doc_ids), list(r.history)) for r in judged]
    return RetrievalData("canard" if path_or_name == "canard" else Path(path_or_name).name, corpus, queries, qrels), records


# ------------------------------------------------------------------------------ by name or path

BUNDLED = {"scifact": "scifact", "squad": "squad/dev-v1.1.json", "canard": "canard"}


def _resolve(path_or_name: str) -> Path:
    p = Path(path_or_name)
    if path_or_name in BUNDLED:
        p = data_dir() / BUNDLED[path_or_name]
        if not p.exists():
            raise RagdistillError(
                f"bundled dataset {path_or_name!r} not found at {p}; set RAGDISTILL_DATA to the folder holding it"
            )
    return p


def _is_canard_dir(p: Path) -> bool:
    return p.is_dir() and not (p / "corpus.jsonl").exists() and any(p.glob("*.json"))


def load_rag(path_or_name: str, max_queries: int | None = None, max_docs: int | None = None,
             require_answers: bool = True) -> tuple[RetrievalData, dict[str, list[QARecord]]]:
    """Retrieval data and QA records per split, from: bundled ``squad`` / ``canard``, a SQuAD JSON
    file, a QA JSONL file, a BEIR folder with ``answers.jsonl`` or a folder of CANARD ``<split>.json``.
    A slice keeps the records of the queries it keeps. ``require_answers=False``: retrieval data
    without answers (a plain BEIR folder, a HF id) comes back with no records instead of an error."""
    p = _resolve(path_or_name)
    name = path_or_name if path_or_name in BUNDLED else None
    if p.is_file() and p.suffix == ".json":
        data, records = load_squad(p)
    elif p.is_file() and p.suffix in (".jsonl", ".gz"):
        data, records = load_qa_jsonl(p)
    elif _is_canard_dir(p):
        data, records = load_canard_rag(path_or_name)
    elif p.is_dir() and (require_answers or (p / ANSWERS_FILE).is_file()):
        data, records = load_beir_qa(p, name)
    elif not require_answers:
        return load_retrieval(path_or_name, max_queries, max_docs), {}
    else:
        raise RagdistillError(
            f"{path_or_name}: no QA data here; use a bundled name (squad, canard), a SQuAD JSON file, a QA JSONL file "
            f"({{\"id\", \"question\", \"answers\", \"contexts\"}} a line) or a BEIR folder with {ANSWERS_FILE}"
        )
    if max_queries or max_docs:
        data = data.slice(max_queries, max_docs)
        records = {s: [r for r in rs if r.id in data.qrels.get(s, {})] for s, rs in records.items()}
    return data, records


def load_retrieval(path_or_name: str, max_queries: int | None = None, max_docs: int | None = None) -> RetrievalData:
    """Retrieval data by bundled name (``scifact``, ``squad``, ``canard``), local BEIR folder, SQuAD
    JSON or QA JSONL file, folder of CANARD ``<split>.json`` files, or HF id."""
    p = _resolve(path_or_name)
    if p.is_file() and p.suffix == ".json":
        data = load_squad(p)[0]
    elif p.is_file() and p.suffix in (".jsonl", ".gz"):
        data = load_qa_jsonl(p)[0]
    elif _is_canard_dir(p):
        data = load_canard_rag(path_or_name)[0]
    elif p.is_dir():
        data = load_beir_dir(p, name=path_or_name if path_or_name in BUNDLED else None)
    elif "/" in path_or_name and not p.exists() and not path_or_name.startswith((".", "/")):
        data = load_beir_hf(path_or_name)
    else:
        raise RagdistillError(
            f"{path_or_name}: no such dataset; use a bundled name ({', '.join(BUNDLED)}), a BEIR folder, a QA JSONL file or a HF id"
        )
    if max_queries or max_docs:
        data = data.slice(max_queries, max_docs)
    return data


def load_qa(path_or_name: str = "squad") -> dict[str, list[QARecord]]:
    """QA records per split (see :func:`load_rag` for the formats)."""
    return load_rag(path_or_name)[1]


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
