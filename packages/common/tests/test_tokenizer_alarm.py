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
