"""Student and teacher checkpoints for this stage: tokenizers with the right end-of-turn token,
and the tokenizer check GKD needs.

The GGUF-converted SmolLM2 tokenizer names ``<|im_start|>`` as its EOS token while the model (and
its generation config) end a turn with ``<|im_end|>``; training with the wrong EOS would teach the
student never to stop. :func:`load_tokenizer` aligns the tokenizer with the generation config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.common.logging import get_logger
from ragdistill.common.models import resolve_model

log = get_logger(__name__)


def load_tokenizer(name_or_path: str, padding_side: str = "right") -> Any:
    """A tokenizer whose ``eos_token`` is the model's end-of-turn token and which has a pad token."""
    from transformers import AutoTokenizer, GenerationConfig

    path = resolve_model(name_or_path)
    tok = AutoTokenizer.from_pretrained(path, padding_side=padding_side)
    try:
        gen = GenerationConfig.from_pretrained(path)
        eos = gen.eos_token_id[0] if isinstance(gen.eos_token_id, list) else gen.eos_token_id
    except (OSError, ValueError):
        eos = None
    if eos is not None and tok.eos_token_id != eos:
        token = tok.convert_ids_to_tokens(int(eos))
        log.info("tokenizer of %s: eos %r -> %r (the generation config's end-of-turn token)", name_or_path, tok.eos_token, token)
        tok.eos_token = token
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def describe_tokenizer(tok: Any, name: str) -> str:
    return f"{name} ({type(tok).__name__}, vocab {len(tok)})"


def check_same_tokenizer(teacher: str, student: str) -> None:
    """GKD compares the teacher's and the student's next-token distributions position by position,
    so both must share one vocabulary; raise a :class:`RagdistillError` naming both when they do not."""
    t, s = load_tokenizer(teacher), load_tokenizer(student)
    if t.get_vocab() != s.get_vocab():
        only_t = len(set(t.get_vocab()) - set(s.get_vocab()))
        raise RagdistillError(
            f"generator.train.method=gkd needs teacher and student to share a tokenizer, but the teacher "
            f"{describe_tokenizer(t, teacher)} and the student {describe_tokenizer(s, student)} differ "
            f"({only_t} teacher tokens are unknown to the student). Use generator.train.method=sft (sequence-level "
            f"distillation on the teacher's answers works across tokenizers), or pick a teacher from the student's "
            f"family (e.g. a larger SmolLM2 for a SmolLM2 student)."
        )


def is_model_dir(path: str | Path) -> bool:
    return (Path(path) / "config.json").is_file()
