"""Teachers that run in this process: sentence-transformers, cross-encoders, HF causal LMs, seq2seq."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ragdistill.common.models import resolve_loadable as resolve_model
from ragdistill.common.teachers.base import Messages


def onnx_export_dir(model: str) -> Path:
    """Where the fp32 ONNX export of ``model`` (a packaged name, folder or hub id) is kept: the
    model cache, once per resolved source (so the export, tens of seconds for mpnet, is paid once)."""
    import hashlib

    from ragdistill.common.paths import model_cache_dir

    src = resolve_model(model)
    tag = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(src).name)[:60]
    return model_cache_dir() / "onnx" / f"{tag}-{hashlib.sha256(src.encode()).hexdigest()[:10]}"


def load_onnx_sentence_transformer(model: str, device: str | None = None) -> Any:
    """``model`` as a ``SentenceTransformer`` on onnxruntime (fp32, CPU): exported by optimum into
    :func:`onnx_export_dir` the first time (one process at a time), loaded from there afterwards."""
    from sentence_transformers import SentenceTransformer

    from ragdistill.common.models import build_once

    onnx_file = "onnx/model.onnx"

    def build(tmp: Path) -> None:
        st = SentenceTransformer(resolve_model(model), device="cpu", backend="onnx",
                                 model_kwargs={"export": True, "provider": "CPUExecutionProvider"})
        st.save_pretrained(str(tmp))

    folder = build_once(onnx_export_dir(model), lambda t: (t / onnx_file).is_file(), build)
    provider = "CUDAExecutionProvider" if device and device.startswith("cuda") else "CPUExecutionProvider"
    return SentenceTransformer(str(folder), device=device or "cpu", backend="onnx",
                               model_kwargs={"file_name": onnx_file, "provider": provider})


class SentenceTransformerTeacher:
    """Embeds texts with a ``SentenceTransformer`` (normalised by default).

    ``onnx=True`` runs the same weights exported to fp32 ONNX (onnxruntime): the embeddings match
    torch's (cosine >= 0.999, tested), so the labels keep torch's key (``teacher_id``) and either
    backend reads and fills the same label cache (``bench/embedder_labelling.py`` times the two on CPU)."""

    MEMO_MAX = 200_000  # texts whose vectors ``score`` keeps (about 600 MB at 768 dims)

    def __init__(self, model: str, batch_size: int = 32, normalize: bool = True, max_length: int | None = None, device: str | None = None,
                 onnx: bool = False) -> None:
        from sentence_transformers import SentenceTransformer

        self.onnx = bool(onnx)
        self.model = load_onnx_sentence_transformer(model, device) if self.onnx else SentenceTransformer(resolve_model(model), device=device)
        if max_length:
            self.model.max_seq_length = max_length
        self.batch_size, self.normalize = batch_size, normalize
        self._memo: dict[str, np.ndarray] = {}  # text -> unit vector, for ``score``
        self.teacher_id = f"st:{model}:norm={normalize}:len={self.model.max_seq_length}"

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=self.normalize, convert_to_numpy=True, show_progress_bar=False
        ).astype(np.float32)

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        """Cosine similarity of each (query, document) pair: a bi-encoder used as a scorer (e.g. one
        member of a hybrid reranker teacher). Each distinct text is encoded once."""
        new = [t for t in dict.fromkeys(t for p in pairs for t in p) if t not in self._memo]
        if new:  # a reranking corpus repeats documents across queries' candidate lists: encode each once
            v = self.embed(new)
            v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
            if len(self._memo) + len(new) > self.MEMO_MAX:
                self._memo.clear()
            self._memo.update(zip(new, v, strict=True))
        return [float(self._memo[q] @ self._memo[d]) for q, d in pairs]

    def forget(self) -> None:
        """Drop the vectors ``score`` memoised: a timed call then pays for encoding, as in serving."""
        self._memo.clear()


class CrossEncoderTeacher:
    """Scores (query, document) pairs with a ``CrossEncoder``; raw logits (no activation)."""

    def __init__(self, model: str, batch_size: int = 32, max_length: int | None = 256, device: str | None = None) -> None:
        from sentence_transformers import CrossEncoder

        self.model = CrossEncoder(resolve_model(model), max_length=max_length, device=device)
        self.batch_size = batch_size
        self.teacher_id = f"ce:{model}:len={max_length}"

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        s = self.model.predict(
            [list(p) for p in pairs], batch_size=self.batch_size, activation_fn=torch.nn.Identity(), show_progress_bar=False
        )
        return [float(x) for x in np.asarray(s).reshape(-1)]


class _HFGenerator:
    """Shared batching and decoding for causal and seq2seq generators.

    A causal LM reuses the key/value cache of the prompt prefix every prompt of a batch shares
    (a few-shot teacher prompt is mostly its examples): it is computed once and kept while the
    next batches share it, so each prompt pays only for its own tail. Greedy outputs equal plain
    batched generation (tested); ``prefix_cache=False`` turns it off."""

    seq2seq = False
    MIN_PREFIX = 32  # shorter shared prefixes are not worth a cache copy

    def __init__(self, model: str, max_new_tokens: int = 128, temperature: float = 0.0, batch_size: int = 8, device: str | None = None,
                 prefix_cache: bool = True) -> None:
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        path = resolve_model(model)
        self.tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        cls = AutoModelForSeq2SeqLM if self.seq2seq else AutoModelForCausalLM
        self.model = cls.from_pretrained(path, dtype=torch.float32).to(device or "cpu").eval()
        self.max_new_tokens, self.temperature, self.batch_size = max_new_tokens, temperature, batch_size
        self.prefix_cache = prefix_cache and not self.seq2seq
        self._prefix: tuple[tuple[int, ...], Any] | None = None  # (token ids, their DynamicCache)
        kind = "s2s" if self.seq2seq else "lm"
        self.teacher_id = f"{kind}:{model}:T={temperature}:max={max_new_tokens}"

    def _prompt(self, messages: Messages) -> str:
        if not self.seq2seq and self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in messages)

    @torch.inference_mode()
    def generate(self, conversations: list[Messages], **overrides: Any) -> list[str]:
        temperature = overrides.get("temperature", self.temperature)
        gen = {
            "max_new_tokens": overrides.get("max_new_tokens", self.max_new_tokens),
            "do_sample": temperature > 0,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if temperature > 0:
            gen["temperature"] = temperature
        out: list[str] = []
        for i in range(0, len(conversations), self.batch_size):
            prompts = [self._prompt(c) for c in conversations[i : i + self.batch_size]]
            enc = self._encode(prompts)
            ids = self.model.generate(**enc, **gen)
            if not self.seq2seq:
                ids = ids[:, enc["input_ids"].shape[1] :]
            out.extend(t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True))
        return out

    def _encode(self, prompts: list[str]) -> dict[str, Any]:
        """Left-padded inputs; with the prefix cache, ``shared prefix | padding | own tail`` plus
        ``past_key_values`` holding the prefix (positions follow the attention mask, so the
        padding in the middle changes nothing)."""
        if not self.prefix_cache:
            return dict(self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=self.seq2seq).to(self.model.device))
        rows = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        n = 0
        limit = min(len(r) for r in rows) - 1  # every row keeps at least one token of its own
        while n < limit and all(r[n] == rows[0][n] for r in rows):
            n += 1
        if self._prefix is not None and len(rows) == 1:  # one prompt: reuse the prefix it shares with earlier calls
            kept = self._prefix[0]
            m = 0
            while m < min(n, len(kept)) and kept[m] == rows[0][m]:
                m += 1
            if m >= self.MIN_PREFIX:
                n = m
        if n < self.MIN_PREFIX:
            return dict(self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device))
        cache = self._prefix_cache(tuple(rows[0][:n]))
        cache.batch_repeat_interleave(len(rows))
        tail = max(len(r) for r in rows) - n
        ids = torch.full((len(rows), n + tail), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        ids[:, :n] = torch.tensor(rows[0][:n])
        mask[:, :n] = 1
        for j, r in enumerate(rows):
            ids[j, n + tail - (len(r) - n) :] = torch.tensor(r[n:])
            mask[j, n + tail - (len(r) - n) :] = 1
        dev = self.model.device
        return {"input_ids": ids.to(dev), "attention_mask": mask.to(dev), "past_key_values": cache}

    def _prefix_cache(self, prefix: tuple[int, ...]) -> Any:
        """A fresh copy of the key/value cache of ``prefix`` (generate extends the cache it is given):
        cut from the kept one when that starts with it, else computed and kept."""
        import copy

        from transformers import DynamicCache

        kept = self._prefix
        if kept is not None and kept[0][: len(prefix)] == prefix:
            cache = copy.deepcopy(kept[1])
            cache.crop(len(prefix))
            return cache
        cache = DynamicCache()
        self.model(input_ids=torch.tensor([list(prefix)], device=self.model.device), past_key_values=cache, use_cache=True)
        self._prefix = (prefix, cache)
        return copy.deepcopy(cache)


class HFCausalLMTeacher(_HFGenerator):
    """A local Hugging Face causal LM; chat template applied when the tokenizer has one."""


class Seq2SeqTeacher(_HFGenerator):
    """A local encoder-decoder (T5 family); messages are joined into one input text."""

    seq2seq = True
