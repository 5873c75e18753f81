"""RAGAS LLM-judged metrics through any of our generation backends, with failures counted.

ragas' collection metrics (faithfulness, answer relevancy, context precision / recall) ask an
``InstructorBaseRagasLLM`` for structured (pydantic) output. :class:`BackendJudge` implements that
interface over any ``GenerationTeacher`` (local causal LM, OpenAI-compatible endpoint, vLLM): it
asks for JSON, extracts and validates it, retries, and raises when it still fails. Each failed
sample is counted and reported per metric; a score is the mean over the samples that were scored,
never a silent NaN. Small local judges often break the JSON format and are slow (a SmolLM2-135M judge
took 15-25 s per question and metric on 2 CPU cores), so this is off by default on CPU; point
``generator.evaluate.ragas.teacher`` at a strong API or vLLM judge.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from typing import Any

from ragdistill.common.logging import get_logger

log = get_logger(__name__)
_OBJ = re.compile(r"\{.*\}", re.DOTALL)


class JudgeParseError(ValueError):
    """The judge's reply was not valid JSON for the requested schema, after all retries."""


def _make_llm_class() -> type:
    from ragas.llms.base import InstructorBaseRagasLLM

    class BackendJudge(InstructorBaseRagasLLM):
        def __init__(self, backend: Any, retries: int = 2, max_new_tokens: int = 256) -> None:
            self.backend, self.retries, self.max_new_tokens = backend, retries, max_new_tokens
            self.calls = self.failures = 0

        def generate(self, prompt: str, response_model: Any) -> Any:
            schema = json.dumps(response_model.model_json_schema())
            text = f"{prompt}\n\nReply with one JSON object only, matching this JSON schema:\n{schema}"
            last = ""
            for _ in range(self.retries + 1):
                self.calls += 1
                last = self.backend.generate([[{"role": "user", "content": text}]], max_new_tokens=self.max_new_tokens)[0]
                m = _OBJ.search(last or "")
                try:
                    return response_model.model_validate_json(m.group() if m else last)
                except Exception:
                    continue
            self.failures += 1
            raise JudgeParseError(f"judge reply is not valid {response_model.__name__} JSON: {last[:120]!r}")

        async def agenerate(self, prompt: str, response_model: Any) -> Any:
            return self.generate(prompt, response_model)

    return BackendJudge


def _make_embeddings(model: str) -> Any:
    from ragas.embeddings.base import BaseRagasEmbedding
    from sentence_transformers import SentenceTransformer

    from ragdistill.common.models import resolve_model

    class STEmbeddings(BaseRagasEmbedding):
        def __init__(self) -> None:
            super().__init__()
            self.model = SentenceTransformer(resolve_model(model))

        def embed_text(self, text: str, **kwargs: Any) -> list[float]:
            return self.model.encode(text, normalize_embeddings=True).tolist()

        async def aembed_text(self, text: str, **kwargs: Any) -> list[float]:
            return self.embed_text(text)

    return STEmbeddings()


def build_metrics(names: Sequence[str], backend: Any, embeddings: str) -> tuple[dict[str, Any], Any]:
    from ragas.metrics.collections import AnswerRelevancy, ContextPrecision, ContextRecall, Faithfulness

    llm = _make_llm_class()(backend)
    known = {
        "faithfulness": lambda: Faithfulness(llm=llm),
        "answer_relevancy": lambda: AnswerRelevancy(llm=llm, embeddings=_make_embeddings(embeddings)),
        "context_precision": lambda: ContextPrecision(llm=llm),
        "context_recall": lambda: ContextRecall(llm=llm),
    }
    bad = [n for n in names if n not in known]
    if bad:
        from ragdistill.common.errors import RagdistillError

        raise RagdistillError(f"generator.evaluate.ragas.metrics: unknown {bad}; choose from {sorted(known)}")
    return {n: known[n]() for n in names}, llm


def _inputs(name: str, question: str, answer: str, contexts: list[str], reference: str) -> dict[str, Any]:
    if name == "faithfulness":
        return {"user_input": question, "response": answer, "retrieved_contexts": contexts}
    if name == "answer_relevancy":
        return {"user_input": question, "response": answer}
    return {"user_input": question, "reference": reference, "retrieved_contexts": contexts}


ANSWER_METRICS = ("faithfulness", "answer_relevancy")  # depend on the system's answer
CONTEXT_METRICS = ("context_precision", "context_recall")  # depend on the contexts only: scored once


def score_ragas(metrics: dict[str, Any], rows: Sequence[dict[str, Any]], only: Sequence[str]) -> dict[str, Any]:
    """Mean score per metric over the rows that were scored, with the failure count and first errors.

    ``rows``: ``{"question", "answer", "contexts", "reference"}``.
    """
    out: dict[str, Any] = {}
    for name in only:
        if name not in metrics:
            continue
        scores, errors = [], []
        for r in rows:
            try:
                res = asyncio.run(metrics[name].ascore(**_inputs(name, r["question"], r["answer"], r["contexts"], r["reference"])))
                v = float(res.value)
                if v != v:  # NaN is a failure too, never averaged in
                    raise JudgeParseError("metric returned NaN")
                scores.append(v)
            except Exception as e:
                errors.append(f"{type(e).__name__}: {str(e)[:160]}")
        out[name] = {"mean": sum(scores) / len(scores) if scores else None, "scored": len(scores), "failed": len(errors), "errors": errors[:3]}
        if errors:
            log.warning("ragas %s: %d of %d samples failed (%s)", name, len(errors), len(rows), errors[0])
    return out
