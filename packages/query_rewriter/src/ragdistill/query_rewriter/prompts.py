"""What the teacher and the student read: one conversation format, two tasks.

Both tasks are text -> text. ``rewrite``: the dialog so far (title, section, recent question /
answer turns) and a follow-up question -> one standalone search query. ``expansion``: a standalone
query -> 3-5 reformulations on one line separated by :data:`SEPARATOR`.

The teacher gets a few-shot chat prompt (:class:`TeacherPrompt`; zero-shot, the packaged 0.5B
teacher echoes the first turn instead of rewriting, see docs/models.md) whose rewrite examples are
human rewrites from the train split (:func:`human_shots`). The student gets the same conversation text with a
one-line instruction and no examples: it learns the task from the teacher's outputs, and a short
prompt keeps it fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ragdistill.common.data import RewriteRecord
from ragdistill.common.errors import RagdistillError
from ragdistill.common.teachers import Messages

SEPARATOR = " ||| "
TASKS = ("rewrite", "expansion")  # config.Task, as plain strings (label templates name them)
FOLLOW_UP = "Follow-up question:"  # the last line of a rewrite source

REWRITE_INSTRUCTION = (
    "You rewrite the last question of a conversation about a Wikipedia article into a standalone search query. "
    "Replace pronouns (he, she, it, they, his, her, their) and vague words (that, this, the album, the war) with the "
    "names they refer to, taken from the topic or earlier turns. Keep the question's meaning. Answer with the rewritten question only."
)
EXPANSION_INSTRUCTION = (
    "Write 3 to 5 different search queries that look for the same information as the query below "
    "(synonyms, related terms, other phrasings). Answer on one line with the queries separated by ' ||| ' "
    "and nothing else."
)


@dataclass(frozen=True)
class Example:
    """One teacher input: the task, the text shown to a model, and what it is measured against."""

    id: str
    task: str  # "rewrite" | "expansion"
    source: str  # the conversation text (rewrite) or the query (expansion)
    question: str  # the follow-up question (rewrite) or the query itself (expansion)
    history: tuple[str, ...] = field(default_factory=tuple)
    reference: str | None = None  # the human rewrite, when the data has one


def format_conversation(history: list[str] | tuple[str, ...], question: str, max_turns: int = 3, max_answer_chars: int = 240) -> str:
    """``Topic: <title> - <section>`` then the last ``max_turns`` Q/A turns, then the follow-up.

    CANARD's ``History`` is ``[title, section, q1, a1, q2, a2, ...]``. Older turns are dropped and
    long answers cut so teacher prompts and student inputs stay short on CPU.
    """
    if not str(question).strip():
        raise RagdistillError("a conversation record has an empty question; each record needs the follow-up question")
    history = [str(h) for h in history]
    lines = []
    if history:
        topic = " - ".join(h for h in history[:2] if h.strip())
        lines.append(f"Topic: {topic}")
    turns = history[2:]
    pairs = [turns[i : i + 2] for i in range(0, len(turns), 2)]
    for pair in pairs[-max_turns:] if max_turns > 0 else []:
        lines.append(f"Q: {pair[0]}")
        if len(pair) > 1:
            a = pair[1] if len(pair[1]) <= max_answer_chars else pair[1][:max_answer_chars].rsplit(" ", 1)[0] + " ..."
            lines.append(f"A: {a}")
    lines.append(f"{FOLLOW_UP} {question.strip()}")
    return "\n".join(lines)


def rewrite_example(rec: RewriteRecord, max_turns: int = 3, max_answer_chars: int = 240) -> Example:
    """A CANARD record as a rewrite example; a record without a question is a clear error."""
    if not str(rec.question or "").strip():
        raise RagdistillError(
            f"conversation record {rec.id!r} has no question; each record needs the follow-up 'Question' to rewrite"
        )
    src = format_conversation(rec.history, rec.question, max_turns, max_answer_chars)
    return Example(rec.id, "rewrite", src, rec.question.strip(), tuple(rec.history), rec.rewrite)


def expansion_example(qid: str, query: str) -> Example:
    if not str(query).strip():
        raise RagdistillError(f"query {qid!r} is empty; expansion needs a query text")
    return Example(qid, "expansion", query.strip(), query.strip())


# ------------------------------------------------------------------------------------- teacher

Shot = tuple[str, str]  # (conversation text or query, what the teacher should answer)

HANDWRITTEN_REWRITE_SHOTS: tuple[Shot, ...] = (  # for data without human rewrites (teach.rewrite_shots=0)
    (
        "Topic: Marie Curie - Nobel Prizes\nQ: When did she win her first one?\nA: In 1903, in physics.\n"
        "Follow-up question: What was her second one for?",
        "What was Marie Curie's second Nobel Prize for?",
    ),
    (
        "Topic: The Rolling Stones - 1970s\nQ: What album did they release in 1971?\nA: Sticky Fingers.\n"
        "Follow-up question: Did they tour after it?",
        "Did the Rolling Stones tour after the album Sticky Fingers?",
    ),
    (
        "Topic: Nikola Tesla - Early years\nFollow-up question: Where was he born?",
        "Where was Nikola Tesla born?",
    ),
)
EXPANSION_SHOTS: tuple[Shot, ...] = (
    (
        "vitamin D deficiency increases the risk of fractures",
        "does low vitamin D raise fracture risk ||| vitamin D deficiency and bone fractures ||| "
        "association between vitamin D levels and fracture incidence",
    ),
)


@dataclass(frozen=True)
class TeacherPrompt:
    """The teacher's few-shot chat prompt for both tasks. Frozen and picklable: Ray workers build
    the prompts where the teacher runs, and :attr:`template_id` keys the label cache, so a change
    of instruction, examples or history window never serves a stale label."""

    rewrite_shots: tuple[Shot, ...] = HANDWRITTEN_REWRITE_SHOTS
    expansion_shots: tuple[Shot, ...] = EXPANSION_SHOTS
    max_turns: int = 2
    max_answer_chars: int = 160

    def messages(self, ex: Example) -> Messages:
        return self.messages_for(ex.task, ex.source)

    def messages_for(self, task: str, source: str) -> Messages:
        instruction, shots = (REWRITE_INSTRUCTION, self.rewrite_shots) if task == "rewrite" else (EXPANSION_INSTRUCTION, self.expansion_shots)
        msgs: Messages = [{"role": "system", "content": instruction}]
        for src, tgt in shots:
            msgs += [{"role": "user", "content": _user_text(task, src)}, {"role": "assistant", "content": tgt}]
        msgs.append({"role": "user", "content": _user_text(task, source)})
        return msgs

    @property
    def template_id(self) -> str:
        import hashlib

        blob = repr((REWRITE_INSTRUCTION, EXPANSION_INSTRUCTION, self.rewrite_shots, self.expansion_shots, self.max_turns, self.max_answer_chars))
        return "query_rewriter/v2:" + hashlib.sha256(blob.encode()).hexdigest()[:12]


def shot_records(records: list[RewriteRecord], n: int, seed: int = 0) -> list[RewriteRecord]:
    """``n`` records of the train split whose human rewrites become the teacher's examples.

    Only records whose rewrite resolves something (it differs from the question) and that have at
    least one earlier Q/A turn, one per dialog topic, drawn with a fixed seed so the prompt (and
    the cache key) depends on the data alone. With the hand-written examples the packaged 0.5B
    teacher left most follow-ups unchanged; with these it resolves most pronouns
    (docs/query_rewriter.md has the measured comparison)."""
    import random

    eligible = [r for r in records if r.rewrite and len(r.history) >= 4 and _norm(r.rewrite) != _norm(r.question)]
    random.Random(seed).shuffle(eligible)
    chosen: list[RewriteRecord] = []
    topics: set[str] = set()
    for r in eligible:
        if r.history[0] not in topics:
            chosen.append(r)
            topics.add(r.history[0])
        if len(chosen) == n:
            return chosen
    raise RagdistillError(
        f"query_rewriter.teach.rewrite_shots={n}: the train split has only {len(chosen)} dialogs with a human rewrite "
        "that differs from its question; lower rewrite_shots (0 = the hand-written examples)"
    )


def human_shots(records: list[RewriteRecord], max_turns: int, max_answer_chars: int) -> tuple[Shot, ...]:
    """The records as (conversation, human rewrite) examples, in the format the teacher rewrites."""
    return tuple((format_conversation(r.history, r.question, max_turns, max_answer_chars), str(r.rewrite).strip()) for r in records)


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", str(text).lower()).split())


def _user_text(task: str, source: str) -> str:
    return source if task == "rewrite" else f"Query: {source}"


# ------------------------------------------------------------------------------------- student


STUDENT_INSTRUCTIONS = {
    "rewrite": "Rewrite the follow-up question as a standalone search query (replace pronouns with what they refer to).",
    "expansion": "Write 3 to 5 search queries for the query below, on one line, separated by ' ||| '.",
}


def student_messages(ex: Example) -> Messages:
    """The short zero-shot prompt a decoder-only student reads (chat template applied later);
    the undistilled student reads the same one, so the comparison isolates distillation."""
    instruction = STUDENT_INSTRUCTIONS[ex.task]
    return [{"role": "system", "content": instruction}, {"role": "user", "content": _user_text(ex.task, ex.source)}]


def seq2seq_input(ex: Example) -> str:
    """The plain-text input of an encoder-decoder student (T5-style task prefix)."""
    return f"{ex.task}: {ex.source}" if ex.task == "rewrite" else f"expand query: {ex.source}"


def prompt_spec(teach: Any, example: Example) -> dict[str, Any]:
    """What the exported student reads, as data (``prompt.json`` beside the weights): the chat messages
    of each task, how a conversation becomes text, the decoding settings, and one example rendered."""
    return {
        "format": "chat messages through the tokenizer's chat template (add_generation_prompt=True), greedy decoding; "
                  "a seq2seq student reads seq2seq_input instead",
        "system": dict(STUDENT_INSTRUCTIONS),
        "user": {"rewrite": "{conversation}", "expansion": "Query: {query}"},
        "conversation": "Topic: <title> - <section>\nQ: <question>\nA: <answer>\n...\nFollow-up question: <question>",
        "max_turns": int(teach.max_turns),  # the last Q/A turns shown; older ones dropped
        "max_answer_chars": int(teach.max_answer_chars),  # longer answers cut at a word, then ' ...'
        "max_new_tokens": {"rewrite": int(teach.rewrite_max_new_tokens), "expansion": int(teach.expansion_max_new_tokens)},
        "expansion_separator": SEPARATOR,
        "seq2seq_input": {"rewrite": "rewrite: {conversation}", "expansion": "expand query: {query}"},
        "example": {"task": example.task, "messages": student_messages(example)},
    }
