"""Filters, reply parsing and error analysis on hand-made inputs (no models)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from ragdistill.common.data import Document
from ragdistill.generator.config import PromptConfig
from ragdistill.generator.examples import QAExample
from ragdistill.generator.filters import (
    Candidate,
    FormatFilter,
    GroundingFilter,
    JudgeFilter,
    LengthFilter,
    parse_judge_score,
    run_filters,
)
from ragdistill.generator.prompts import FormatError, Parsed, build_messages, parse_reply, render_reply
from ragdistill.generator.scoring import error_analysis


def prompt(**kw):
    return OmegaConf.structured(PromptConfig(**kw))


def example(i: int = 0, text: str = "The Eiffel Tower was designed by Gustave Eiffel in Paris.") -> QAExample:
    return QAExample(f"q{i}", "Who designed the tower?", ["Gustave Eiffel"], [Document(f"d{i}", text, "Eiffel Tower")], [f"d{i}"])


def test_parse_text_rationale_and_json():
    assert parse_reply("Gustave Eiffel\nextra line", prompt()).answer == "Gustave Eiffel"
    r = parse_reply("Passage 1 names him.\nAnswer: Gustave Eiffel", prompt(rationale=True))
    assert (r.answer, r.rationale) == ("Gustave Eiffel", "Passage 1 names him.")
    assert parse_reply('```json\n{"answer": "Paris"}\n```', prompt(answer_format="json")).answer == "Paris"
    with pytest.raises(FormatError, match="malformed JSON"):
        parse_reply('{"answer": "Paris"', prompt(answer_format="json"))
    with pytest.raises(FormatError, match="schema violation at answer"):
        parse_reply('{"answer": 3}', prompt(answer_format="json"))
    with pytest.raises(FormatError, match="'answer' is a required property"):
        parse_reply('{"reply": "Paris"}', prompt(answer_format="json"))
    with pytest.raises(FormatError, match="no 'Answer:'"):
        parse_reply("I think it is Paris", prompt(rationale=True))
    with pytest.raises(FormatError, match="empty"):
        parse_reply("   ", prompt())


def test_render_reply_round_trips_each_format():
    for p in (prompt(), prompt(rationale=True), prompt(answer_format="json"), prompt(answer_format="json", rationale=True)):
        parsed = Parsed("Gustave Eiffel", "Passage 1 says so.")
        assert parse_reply(render_reply(parsed, p), p).answer == "Gustave Eiffel"


def test_messages_hold_contexts_question_and_format_instruction():
    msgs = build_messages("Who designed it?", example().contexts, prompt(answer_format="json"))
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "[1] Eiffel Tower: The Eiffel Tower was designed" in msgs[1]["content"]
    assert "Question: Who designed it?" in msgs[1]["content"]
    assert msgs[1]["content"].endswith('Reply with JSON only: {"answer": "<short answer>"}.')


def test_malformed_json_is_dropped_and_counted_not_fatal():
    p = prompt(answer_format="json")
    replies = ['{"answer": "Gustave Eiffel"}', "Gustave Eiffel", '{"answer": "Gustave', '{"answer": ""}', '{"answer": "Eiffel"}']
    cands = [Candidate(example(i), r) for i, r in enumerate(replies)]
    report = run_filters(cands, [FormatFilter(p)])
    assert report["filters"]["format"]["dropped"] == 3
    assert report["kept"] == 2 and report["dropped"] == 3
    assert [c.kept for c in cands] == [True, False, False, False, True]
    assert "malformed JSON" in cands[1].reason and "minLength" not in cands[1].reason
    assert "schema violation" in cands[3].reason


def test_length_filter_uses_percentiles_computed_by_hand():
    # word counts 1, 2, 3, 4, 100: the 20th percentile is 1.8, the 80th is 4 + 0.2 * 96 = 23.2
    answers = ["a", "a b", "a b c", "a b c d", " ".join(["w"] * 100)]
    cands = [Candidate(example(i), a, parsed=Parsed(a)) for i, a in enumerate(answers)]
    f = LengthFilter(min_pct=20, max_pct=80)
    assert f.thresholds([1, 2, 3, 4, 100]) == pytest.approx((1.8, 23.2))
    res = f(cands)
    assert res.dropped == 2 and [c.kept for c in cands] == [False, True, True, True, False]
    assert LengthFilter(0, 100, max_words=3).thresholds([1, 2, 3, 4, 100]) == (1.0, 3.0)
    with pytest.raises(ValueError, match="percentiles"):
        LengthFilter(90, 10)


def test_grounding_filter_drops_answers_not_in_contexts():
    cands = [Candidate(example(0), "x", parsed=Parsed("Gustave Eiffel")), Candidate(example(1), "x", parsed=Parsed("Napoleon Bonaparte")),
             Candidate(example(2), "x", parsed=Parsed("Gustave Napoleon"))]
    res = GroundingFilter(0.75)(cands)
    assert res.dropped == 2
    assert [c.scores["grounding"] for c in cands] == [1.0, 0.0, 0.5]


def test_judge_filter_scores_drops_and_counts_unparsed():
    seen = []

    def judge(convs):
        seen.extend(convs)
        return ["4", "Score: 2", "I cannot tell"]

    cands = [Candidate(example(i), "x", parsed=Parsed("Gustave Eiffel")) for i in range(3)]
    res = JudgeFilter(judge, prompt(), min_score=3)(cands)
    assert [c.kept for c in cands] == [True, False, False]
    assert res.dropped == 2 and res.settings["unparsed"] == 1
    assert "Proposed answer: Gustave Eiffel" in seen[0][0]["content"]
    assert parse_judge_score("5/5") == 5 and parse_judge_score("none") is None


def test_filters_run_in_order_and_counts_add_up():
    p = prompt(answer_format="json")
    replies = ['{"answer": "Gustave Eiffel"}', "oops", '{"answer": "Napoleon"}', '{"answer": "Eiffel"}']
    cands = [Candidate(example(i), r) for i, r in enumerate(replies)]
    report = run_filters(cands, [FormatFilter(p), LengthFilter(0, 100), GroundingFilter(0.75)])
    f = report["filters"]
    assert (f["format"]["seen"], f["format"]["dropped"]) == (4, 1)
    assert (f["grounding"]["seen"], f["grounding"]["dropped"]) == (3, 1)
    assert sum(v["dropped"] for v in f.values()) == report["dropped"] == 2


def test_error_analysis_separates_inherited_from_compression():
    exs = [example(i) for i in range(4)]
    row = lambda a, f1: {"answer": a, "token_f1": f1}  # noqa: E731
    by = {
        "teacher": [row("Gustave Eiffel", 1.0), row("Paris", 0.0), row("Gustave Eiffel", 1.0), row("Gustave Eiffel", 1.0)],
        "student": [row("Gustave Eiffel", 1.0), row("Paris", 0.0), row("the tower", 0.0), row("Gustave Eiffel", 1.0)],
        "student_base": [row("x", 0.0), row("y", 0.0), row("Gustave Eiffel", 1.0), row("Gustave Eiffel", 1.0)],
    }
    ea = error_analysis(exs, by)
    assert (ea["student_errors"], ea["inherited"], ea["compression"]) == (2, 1, 1)
    assert (ea["fixed_by_distillation"], ea["broken_by_distillation"]) == (1, 1)
    assert ea["examples"]["compression"][0]["student"] == "the tower"


def test_a_reply_is_its_raw_text_and_carries_its_answer():
    import json
    import pickle

    from ragdistill.generator.scoring import Reply, answer_text

    raw = '{"answer": "Gustave Eiffel"}'
    r = Reply.parse(raw, prompt(answer_format="json"))
    assert r == raw and json.dumps(r) == json.dumps(raw)  # the cache and the queue store the raw reply
    assert (r.answer, r.format_ok) == ("Gustave Eiffel", True) and answer_text(r) == "Gustave Eiffel"
    back = pickle.loads(pickle.dumps(r))
    assert (back, back.answer) == (raw, "Gustave Eiffel")
    assert (Reply.parse("Sure: Paris\nmore", prompt(answer_format="json")).answer, answer_text("a logged answer")) == ("Sure: Paris", "a logged answer")
