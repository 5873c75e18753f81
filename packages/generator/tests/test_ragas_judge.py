"""ragas LLM-judged metrics through our generation-backend judge: failures are counted, never NaN."""

from __future__ import annotations

import json

from ragdistill.generator.ragas_judge import ANSWER_METRICS, build_metrics, score_ragas


class ScriptedBackend:
    """A generation backend (our GenerationTeacher protocol) that replies from a script."""

    teacher_id = "scripted"

    def __init__(self, reply):
        self.reply, self.prompts = reply, []

    def generate(self, conversations, **overrides):
        self.prompts.extend(c[-1]["content"] for c in conversations)
        return [self.reply(c[-1]["content"]) for c in conversations]


ROWS = [{"question": "Who designed the Eiffel Tower?", "answer": "Gustave Eiffel designed it.",
         "contexts": ["The Eiffel Tower was designed by Gustave Eiffel."], "reference": "Gustave Eiffel"}] * 2


def test_unparseable_judge_is_counted_not_nan():
    backend = ScriptedBackend(lambda prompt: "I think it is faithful!")
    metrics, llm = build_metrics(["faithfulness"], backend, "minilm-l6")
    res = score_ragas(metrics, ROWS, ANSWER_METRICS)["faithfulness"]
    assert res == {"mean": None, "scored": 0, "failed": 2, "errors": res["errors"]}
    assert "JudgeParseError" in res["errors"][0]
    assert llm.failures == 2 and llm.calls == 6  # one try + two retries per sample
    assert "JSON schema" in backend.prompts[0]


def test_judge_with_valid_json_scores_faithfulness():
    def reply(prompt: str) -> str:
        if "statements" in prompt and "verdict" not in prompt:
            return json.dumps({"statements": ["Gustave Eiffel designed the Eiffel Tower."]})
        return json.dumps({"statements": [{"statement": "Gustave Eiffel designed the Eiffel Tower.", "reason": "stated", "verdict": 1}]})

    metrics, _ = build_metrics(["faithfulness"], ScriptedBackend(reply), "minilm-l6")
    res = score_ragas(metrics, ROWS, ANSWER_METRICS)["faithfulness"]
    assert (res["mean"], res["scored"], res["failed"]) == (1.0, 2, 0)
