"""transformers 4.57.6 warns that the converted Qwen teacher's tokenizer has "an incorrect regex
pattern" (a Mistral check that fires for every local folder it saved). Shown false here, then silenced:
the saved tokenizer splits with Qwen2's own pre-tokenizer pattern and gives the GGUF tokenizer's ids."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from transformers import AutoTokenizer

from ragdistill.common.data import load_qa, load_rewrites
from ragdistill.common.logging import _FalseMistralRegexAlarm, quiet_false_alarms
from ragdistill.common.models import PACKAGED, _join_parts, _part_files, resolve_model

QWEN2_PRETOKENIZER = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


def _prompts(n: int) -> list[str]:
    squad = load_qa("squad")["test"][: n // 2]
    canard = load_rewrites("canard")["test"][: n // 2]
    return ([f"{r.contexts[0]}\n\nQuestion: {r.question}" for r in squad]
            + ["\n".join([*r.history, r.question]) for r in canard])


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_qwen_regex_warning_is_a_false_alarm_and_silenced(tmp_path):
    folder = Path(resolve_model("qwen2.5-0.5b-instruct"))
    split = json.loads((folder / "tokenizer.json").read_text())["pre_tokenizer"]["pretokenizers"][0]
    assert split["pattern"]["Regex"] == QWEN2_PRETOKENIZER  # Qwen2's own pattern, not Mistral's
    lg = logging.getLogger("transformers.tokenization_utils_base")
    seen = _Collect()
    lg.addHandler(seen)  # after the logger's filters, before transformers' own (non-propagating) handler
    try:
        ours = [f for f in lg.filters if isinstance(f, _FalseMistralRegexAlarm)]
        assert ours  # installed by importing ragdistill.common
        for f in ours:  # without the filter transformers warns (the check below can fail)
            lg.removeFilter(f)
        try:
            AutoTokenizer.from_pretrained(folder)
            assert any("fix_mistral_regex" in m for m in seen.messages)
        finally:
            quiet_false_alarms()
        seen.messages.clear()
        saved = AutoTokenizer.from_pretrained(folder)
        assert not any("fix_mistral_regex" in m for m in seen.messages)
    finally:
        lg.removeHandler(seen)
    gguf = _join_parts(_part_files(PACKAGED["qwen2.5-0.5b-instruct"]), tmp_path / "model.gguf")
    own = AutoTokenizer.from_pretrained(tmp_path, gguf_file=gguf.name)
    prompts = _prompts(300)
    assert len(prompts) == 300 and sum(len(p) for p in prompts) > 100_000
    for p in prompts:
        assert saved(p)["input_ids"] == own(p)["input_ids"], p[:80]


def test_a_gguf_byte_level_tokenizer_reads_the_same_in_transformers_4_and_vllms_5(tmp_path):
    """SmolLM2's GGUF conversion saved a byte-level BPE as ``LlamaTokenizer`` with SentencePiece's decoder:
    transformers 5 (vLLM's venv) rebuilt that class with a SentencePiece pre-tokenizer and read
    'Private schools' as 'Priv','ates','chool'. ``portable_tokenizer`` makes both versions read it as written."""
    import os
    import subprocess

    from ragdistill.common.models import portable_tokenizer, resolve_tokenizer
    from ragdistill.common.paths import project_home

    src = Path(resolve_tokenizer("smollm2-135m-instruct"))
    old = tmp_path / "old"
    old.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (old / name).write_bytes((src / name).read_bytes())
    # the files as the GGUF conversion wrote them before the fix
    cfg = json.loads((old / "tokenizer_config.json").read_text()) | {"tokenizer_class": "LlamaTokenizer"}
    (old / "tokenizer_config.json").write_text(json.dumps(cfg))
    tok = json.loads((old / "tokenizer.json").read_text())
    tok["decoder"] = {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"},
                                                       {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}]}
    (old / "tokenizer.json").write_text(json.dumps(tok))
    text = "Private schools in Ireland are funded by the state.\nWho pays?"
    before = AutoTokenizer.from_pretrained(old)(text)["input_ids"]

    assert portable_tokenizer(old) == ["decoder", "tokenizer_class"] and portable_tokenizer(old) == []
    fixed = AutoTokenizer.from_pretrained(old)
    assert fixed.model_input_names == ["input_ids", "attention_mask"]  # no token_type_ids for generate()
    assert fixed(text)["input_ids"] == before and fixed.decode(before, skip_special_tokens=True) == text
    assert "Ġschools" in fixed.convert_ids_to_tokens(before)

    vllm_py = Path(os.environ.get("RAGDISTILL_VLLM_PYTHON", project_home() / ".venv-vllm/bin/python"))
    if vllm_py.exists():  # transformers 5, as vLLM loads it
        code = ("import json,sys; from transformers import AutoTokenizer; t = AutoTokenizer.from_pretrained(sys.argv[1]); "
                "ids = t(sys.argv[2])['input_ids']; print(json.dumps([ids, t.decode(ids, skip_special_tokens=True)]))")
        out = subprocess.run([str(vllm_py), "-c", code, str(old), text], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert out.returncode == 0, out.stderr[-2000:]
        assert json.loads(out.stdout.strip().splitlines()[-1]) == [before, text]
