"""The one prompt teach, train, evaluate and export share, and how a reply is read back.

Teacher and student see the same conversation (system + user message built from the config), so
the student is trained on exactly the input it is evaluated and served with. A reply is parsed by
:func:`parse_reply` according to ``prompt.answer_format`` (``text`` or ``json``) and
``prompt.rationale``; a malformed reply raises :class:`FormatError`, which the format filter counts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf

from ragdistill.common.data import Document
from ragdistill.common.teachers import Messages

_ANSWER_MARK = re.compile(r"(?:^|\n|\s)(?:final\s+)?answer\s*:\s*", re.IGNORECASE)
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


class FormatError(ValueError):
    """A reply that does not follow the requested format (malformed JSON, schema violation, no answer)."""


@dataclass(frozen=True)
class Parsed:
    answer: str
    rationale: str | None = None


def _settings(prompt: Any) -> dict[str, Any]:
    return OmegaConf.to_container(prompt, resolve=True) if OmegaConf.is_config(prompt) else dict(vars(prompt))


def format_contexts(contexts: Sequence[Document], prompt: Any) -> str:
    """Numbered passages, each cut to ``max_context_chars`` (at a word boundary)."""
    p = _settings(prompt)
    lines = []
    for n, doc in enumerate(contexts, start=1):
        text = doc.text
        if len(text) > p["max_context_chars"]:
            text = text[: p["max_context_chars"]].rsplit(" ", 1)[0] + " ..."
        lines.append(p["context_template"].format(n=n, title=doc.title, text=text))
    return "\n".join(lines)


def build_messages(question: str, contexts: Sequence[Document], prompt: Any) -> Messages:
    """System + user messages for one question over its contexts."""
    p = _settings(prompt)
    user = p["template"].format(contexts=format_contexts(contexts, prompt), question=question)
    if p["answer_format"] == "json":
        user += "\n" + (p["json_rationale_instruction"] if p["rationale"] else p["json_instruction"]).format()
    elif p["rationale"]:
        user += "\n" + p["rationale_instruction"]
    messages: Messages = [{"role": "system", "content": p["system"]}] if p["system"] else []
    messages.append({"role": "user", "content": user})
    return messages


def conversation(question: str, contexts: Sequence[str], prompt: Any) -> Messages:
    """The pipeline contract's (question, context texts) as the chat the student was trained on: a
    :class:`~ragdistill.common.pipeline.Passage` brings its document's title, as in training, so a
    held-out record's conversation is the one teach and evaluate label (same cache key)."""
    return build_messages(question, [Document(f"c{i}", str(c), getattr(c, "title", "")) for i, c in enumerate(contexts)], prompt)


def parse_reply(reply: str, prompt: Any) -> Parsed:
    """The answer (and rationale) in a model's reply; :class:`FormatError` if it breaks the format."""
    p = _settings(prompt)
    text = (reply or "").strip()
    if p["answer_format"] == "json":
        return _parse_json(text, p["json_schema"])
    if p["rationale"]:
        parts = _ANSWER_MARK.split(text)
        if len(parts) < 2 or not parts[-1].strip():
            raise FormatError("rationale mode: no 'Answer:' line in the reply")
        return Parsed(parts[-1].strip().splitlines()[0].strip(), parts[0].strip() or None)
    answer = text.splitlines()[0].strip() if text else ""
    if not answer:
        raise FormatError("empty reply")
    return Parsed(answer)


def _parse_json(text: str, schema: dict[str, Any]) -> Parsed:
    import jsonschema

    body = _FENCE.sub("", text).strip()
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as e:
        raise FormatError(f"malformed JSON ({e.msg} at column {e.colno})") from None
    try:
        jsonschema.validate(obj, schema)
    except jsonschema.ValidationError as e:
        where = "/".join(str(x) for x in e.absolute_path) or "<root>"
        raise FormatError(f"JSON schema violation at {where}: {e.message}") from None
    if not isinstance(obj, dict) or not str(obj.get("answer", "")).strip():
        raise FormatError("JSON reply has no non-empty 'answer'")
    rationale = obj.get("rationale")
    return Parsed(str(obj["answer"]).strip(), str(rationale).strip() if rationale else None)


def render_reply(parsed: Parsed, prompt: Any) -> str:
    """The canonical training target for a parsed reply, in the configured format."""
    p = _settings(prompt)
    if p["answer_format"] == "json":
        obj = {"rationale": parsed.rationale, "answer": parsed.answer} if p["rationale"] and parsed.rationale else {"answer": parsed.answer}
        return json.dumps(obj, ensure_ascii=False)
    if p["rationale"] and parsed.rationale:
        return f"{parsed.rationale}\nAnswer: {parsed.answer}"
    return parsed.answer
