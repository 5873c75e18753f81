"""Teacher backends behind one interface; :func:`build_teacher` makes one from its config."""

from __future__ import annotations

from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.common.teachers.base import (
    EmbeddingTeacher,
    GenerationTeacher,
    Messages,
    ScoringTeacher,
    Teacher,
    require,
)

BACKENDS = ("sentence_transformer", "cross_encoder", "bm25", "causal_lm", "seq2seq", "openai", "vllm", "ensemble")


def build_teacher(cfg: Any) -> Teacher:
    """Instantiate the backend named by ``cfg.backend`` (a TeacherConfig or a dict-like)."""
    get = cfg.get if isinstance(cfg, dict) else lambda k, d=None: getattr(cfg, k, d)
    backend, model = get("backend"), get("model")
    if backend == "ensemble":  # several weighted teachers as one (teachers/ensemble.py)
        from ragdistill.common.teachers.ensemble import build_ensemble

        return build_ensemble(cfg, build_teacher)
    if not model:
        raise RagdistillError("teacher.model is not set; pass teacher=<name> or teacher.model=<path or hub id>")
    if backend == "sentence_transformer":
        from ragdistill.common.teachers.local import SentenceTransformerTeacher

        return SentenceTransformerTeacher(model, batch_size=get("batch_size", 32), max_length=get("max_length"), onnx=bool(get("onnx", False)))
    if backend == "cross_encoder":
        from ragdistill.common.teachers.local import CrossEncoderTeacher

        return CrossEncoderTeacher(model, batch_size=get("batch_size", 32), max_length=get("max_length") or 256)
    if backend == "bm25":  # model = the corpus (bundled dataset name or BEIR folder) BM25 statistics come from
        from ragdistill.common.teachers.lexical import BM25Teacher

        return BM25Teacher(model)
    if backend in ("causal_lm", "seq2seq"):
        from ragdistill.common.teachers.local import HFCausalLMTeacher, Seq2SeqTeacher

        cls = HFCausalLMTeacher if backend == "causal_lm" else Seq2SeqTeacher
        return cls(model, max_new_tokens=get("max_new_tokens", 128), temperature=get("temperature", 0.0), batch_size=get("batch_size", 8))
    if backend == "openai":
        from ragdistill.common.teachers.fleet import parse_base_urls
        from ragdistill.common.teachers.openai_http import OpenAIChatTeacher

        urls = parse_base_urls(list(get("base_urls") or [])) or parse_base_urls(get("base_url"))  # the fleet wins
        return OpenAIChatTeacher(
            model, base_url=urls or "http://127.0.0.1:8000/v1", api_key_env=get("api_key_env", "OPENAI_API_KEY"),
            temperature=get("temperature", 0.0), max_new_tokens=get("max_new_tokens", 128),
            max_in_flight=get("max_in_flight", 8), rate_limit=get("rate_limit"), max_retries=get("max_retries", 5),
            timeout=get("request_timeout", 120.0), fail_threshold=get("fail_threshold", 3), cooldown=get("cooldown_s", 30.0),
        )
    if backend == "vllm":
        from ragdistill.common.teachers.vllm_engine import VLLMTeacher

        return VLLMTeacher(model, temperature=get("temperature", 0.0), max_new_tokens=get("max_new_tokens", 128),
                           tensor_parallel_size=get("tensor_parallel_size", 1))
    raise RagdistillError(f"teacher.backend={backend!r} is unknown; choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "EmbeddingTeacher", "GenerationTeacher", "Messages", "ScoringTeacher", "Teacher", "build_teacher", "require"]
