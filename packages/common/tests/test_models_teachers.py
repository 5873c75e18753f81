"""Packaged models resolve offline; teachers behind one interface; the HTTP teacher retries."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from ragdistill.common.errors import RagdistillError
from ragdistill.common.models import resolve_model
from ragdistill.common.teachers import EmbeddingTeacher, GenerationTeacher, build_teacher, require


def test_packaged_names_resolve_to_local_folders():
    for name in ("minilm-l6", "mpnet"):
        p = Path(resolve_model(name))
        assert (p / "config.json").exists() and (p / "modules.json").exists()


def test_tokenizer_of_an_unconverted_gguf_model_equals_the_converted_ones(tmp_path, monkeypatch):
    """load_tokenizer reads a not-yet-converted GGUF's tokenizer from its metadata (no de-quantisation),
    and gets exactly the tokenizer, EOS and pad of the full conversion (SmolLM2 here: the suite converts it
    anyway; the 0.5B Qwen takes the same path, which spares the suite its 78 s conversion)."""
    from ragdistill.common.models import load_tokenizer

    name = "smollm2-135m-instruct"
    full = load_tokenizer(resolve_model(name))  # the full conversion, in the model cache this suite shares
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # an empty model cache
    light = load_tokenizer(name)
    models = tmp_path / "ragdistill" / "models"
    assert not (models / name).exists() and (models / f"{name}.tokenizer" / "tokenizer.json").is_file()
    assert not list((models / f"{name}.tokenizer").glob("*.gguf"))  # the joined GGUF is not kept
    assert light.get_vocab() == full.get_vocab()
    assert (light.eos_token, light.pad_token, light.chat_template) == (full.eos_token, full.pad_token, full.chat_template)


def test_gguf_chat_model_converts_with_its_end_of_turn_eos():
    from transformers import AutoTokenizer, GenerationConfig

    p = Path(resolve_model("smollm2-135m-instruct"))
    tok, gen = AutoTokenizer.from_pretrained(p), GenerationConfig.from_pretrained(p)
    # SmolLM2's GGUF names <|im_start|> as EOS; the model ends a turn with <|im_end|>
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_id == gen.eos_token_id and tok.pad_token is not None
    assert not (p / "tokenizer.model").exists()  # no 90 MB copy of the GGUF beside tokenizer.json
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True).endswith(
        "<|im_start|>assistant\n")


def test_local_path_and_hub_id_pass_through(tmp_path):
    assert resolve_model(str(tmp_path)) == str(tmp_path.resolve())
    assert resolve_model("BAAI/bge-base-en-v1.5") == "BAAI/bge-base-en-v1.5"


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(RagdistillError, match=r"model path '.*nope' does not exist; pass an existing folder"):
        resolve_model(str(tmp_path / "nope"))


def test_embedding_teacher_is_real_and_normalised():
    t = build_teacher({"backend": "sentence_transformer", "model": "minilm-l6", "max_length": 64})
    v = require(t, EmbeddingTeacher, "embedder").embed(["a cat sits", "a kitten is sitting", "stock prices fell"])
    assert v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    with pytest.raises(RagdistillError, match="generator needs a teacher that can generate"):
        require(t, GenerationTeacher, "generator")


def test_unknown_backend_and_missing_model():
    with pytest.raises(RagdistillError, match=r"teacher\.backend='gpt' is unknown"):
        build_teacher({"backend": "gpt", "model": "x"})
    with pytest.raises(RagdistillError, match=r"teacher\.model is not set"):
        build_teacher({"backend": "openai", "model": ""})


class _Server(BaseHTTPRequestHandler):
    """A real OpenAI-compatible endpoint on loopback that fails twice with 429/503, then answers."""

    failures: ClassVar[list[int]] = [429, 503]
    seen_auth: ClassVar[list[str]] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen_auth.append(self.headers.get("Authorization", ""))
        if type(self).failures:
            self.send_response(type(self).failures.pop(0))
            self.send_header("Retry-After", "0")
            self.end_headers()
            return
        reply = {"choices": [{"message": {"role": "assistant", "content": body["messages"][-1]["content"].upper()}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_openai_teacher_retries_and_keeps_the_key_out_of_repr(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-secret")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        t = build_teacher({"backend": "openai", "model": "m", "base_url": f"http://127.0.0.1:{server.server_port}/v1", "api_key_env": "MY_KEY"})
        t.backoff = 0.01
        assert t.generate([[{"role": "user", "content": "hello"}]]) == ["HELLO"]
        assert _Server.seen_auth == ["Bearer sk-secret"] * 3
        assert "sk-secret" not in repr(t)
        _Server.failures = [400]
        with pytest.raises(RagdistillError, match="answered 400"):
            t.generate([[{"role": "user", "content": "x"}]])
    finally:
        server.shutdown()


def test_prefix_cached_generation_equals_plain_generation():
    """Few-shot prompts share a long prefix: its cache is reused across batches and cut for a
    single prompt; greedy outputs must be those of plain batched generation."""
    from ragdistill.common.teachers.local import HFCausalLMTeacher

    shots = [m for i in range(3) for m in ({"role": "user", "content": f"Example question {i} about the solar system and its planets?"},
                                            {"role": "assistant", "content": f"Standalone example answer number {i}."})]
    system = {"role": "system", "content": "Rewrite the question so that it stands alone. Answer with the question only."}
    questions = ["Where was he born?", "What did they release in 1971?", "Who won it?", "When did she retire from the team?", "Why?"]
    convs = [[system, *shots, {"role": "user", "content": q}] for q in questions]
    cached = HFCausalLMTeacher("smollm2-135m-instruct", max_new_tokens=12, batch_size=2)
    plain = HFCausalLMTeacher("smollm2-135m-instruct", max_new_tokens=12, batch_size=2, prefix_cache=False)
    want = plain.generate(convs)
    assert cached.generate(convs) == want  # batches of 2 and a last batch of 1
    assert cached._prefix is not None and len(cached._prefix[0]) >= cached.MIN_PREFIX
    cached.batch_size = 1
    assert [cached.generate([c])[0] for c in convs] == want  # one prompt at a time: the shared prefix is cut from the kept cache
    unrelated = [[{"role": "user", "content": "Name a colour."}]]
    assert cached.generate(unrelated) == plain.generate(unrelated)
