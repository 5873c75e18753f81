"""generator calibrate: how sure the distilled student is of each answer, and when to ask the teacher.

On the held-out questions ``evaluate`` answers (same contexts, same prompt), per question: the
student's confidence (``routing.signal``: ``mean_logprob`` / ``min_logprob`` of its greedy
answer's tokens, or ``sample_agreement`` = ROUGE-L agreement of the greedy answer with one sampled
answer), the student's and the teacher's token F1 against the references, and their disagreement
(1 - ROUGE-L of the two answers). :func:`ragdistill.common.ops.routing_stage` picks the
threshold and writes ``<work_dir>/generator/calibrate/routing_curve.{json,png}``, which
:func:`routed` (the e2e ``pipeline.generator=routed`` variant) reads. Teacher answers come through
the label cache (the key ``teach`` and ``evaluate`` use).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragdistill.common.config import apply_run_settings, stage_dir
from ragdistill.common.data import Document
from ragdistill.common.errors import RagdistillError
from ragdistill.common.routing import HeldOut, RoutedComponent, RoutingTarget, calibrate_stage, load_calibration
from ragdistill.common.signals import generation_logprobs, mean_logprob, min_logprob, sample_agreement
from ragdistill.common.teachers import Messages
from ragdistill.generator.prompts import build_messages
from ragdistill.generator.scoring import answer_of

STAGE = "generator"
SIGNALS = ("mean_logprob", "min_logprob", "sample_agreement")
QUALITY = "token_f1"
SAMPLE_TEMPERATURE = 0.7  # the second answer of sample_agreement


def signal_name(cfg: Any) -> str:
    """``routing.signal`` or the stage default (mean_logprob); signals that need a score list are an error here."""
    name = str(cfg.routing.signal or "mean_logprob")
    if name not in SIGNALS:
        raise RagdistillError(f"routing.signal={name!r}: the generator routes on its own answer; choose {', '.join(SIGNALS)}")
    return name


def conversation(question: str, contexts: Sequence[str], prompt: Any) -> Messages:
    """The pipeline contract's (question, context texts) as the chat the student was trained on
    (a :class:`~ragdistill.common.pipeline.Passage` brings its document's title, as in training)."""
    return build_messages(question, [Document(f"c{i}", str(c), getattr(c, "title", "")) for i, c in enumerate(contexts)], prompt)


class ScoredStudent:
    """The distilled student answering greedily, with a confidence per answer (``routing.signal``).

    Loads through evaluate's :class:`~ragdistill.generator.evaluate.LocalGenerator` (same tokenizer,
    end-of-turn token and greedy decoding), so its answers are the ones ``evaluate`` scores; the
    token log-probabilities come from the same ``generate`` call (``output_scores``), no second pass.
    """

    def __init__(self, path: str, prompt: Any, max_new_tokens: int, signal: str, batch_size: int = 8, seed: int = 42) -> None:
        from ragdistill.generator.evaluate import LocalGenerator

        gen = LocalGenerator(path, max_new_tokens, batch_size)
        self.model, self.tok = gen.backend.model, gen.tokenizer
        self.prompt, self.max_new_tokens, self.signal = prompt, max_new_tokens, signal
        self.batch_size, self.seed = batch_size, seed
        self.model_path = path
        self.last_confidence = float("nan")

    def replies(self, conversations: list[Messages]) -> tuple[list[str], list[float]]:
        """Greedy replies and their confidences, batch by batch."""
        import torch

        texts: list[str] = []
        conf: list[float] = []
        for b in range(0, len(conversations), self.batch_size):
            prompts = [self.tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations[b : b + self.batch_size]]
            enc = self.tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
            kw = {"max_new_tokens": self.max_new_tokens, "pad_token_id": self.tok.pad_token_id}
            with torch.inference_mode():
                out = self.model.generate(**enc, **kw, do_sample=False, output_scores=True, return_dict_in_generate=True)
            n_in = enc["input_ids"].shape[1]
            greedy = [t.strip() for t in self.tok.batch_decode(out.sequences[:, n_in:], skip_special_tokens=True)]
            if self.signal == "sample_agreement":
                torch.manual_seed(self.seed + b)
                with torch.inference_mode():
                    s_ids = self.model.generate(**enc, **kw, do_sample=True, temperature=SAMPLE_TEMPERATURE, top_p=1.0, top_k=0)
                samples = [t.strip() for t in self.tok.batch_decode(s_ids[:, n_in:], skip_special_tokens=True)]
                conf += [sample_agreement(answer_of(g, self.prompt)[0], answer_of(s, self.prompt)[0]) for g, s in zip(greedy, samples, strict=True)]
            else:
                fn = mean_logprob if self.signal == "mean_logprob" else min_logprob
                conf += [fn(lp) for lp in generation_logprobs(self.model, out, self.tok.eos_token_id)]
            texts += greedy
        return texts, conf

    def __call__(self, question: str, contexts: list[str]) -> str:
        (reply,), (c,) = self.replies([conversation(question, contexts, self.prompt)])
        self.last_confidence = c
        return answer_of(reply, self.prompt)[0]


def scored_student(cfg: Any) -> ScoredStudent:
    """The distilled (merged) student of ``train``, scoring with ``routing.signal``."""
    from ragdistill.generator.evaluate import student_paths

    return ScoredStudent(student_paths(cfg)["student"], cfg.generator.prompt, int(cfg.generator.student_max_new_tokens), signal_name(cfg),
                         int(cfg.generator.evaluate.batch_size), int(cfg.run.seed))


def held_out(cfg: Any) -> HeldOut:
    """Answer every held-out question with the distilled student and (from the cache) the teacher; score both."""
    from ragdistill.common.answer_metrics import rouge_l
    from ragdistill.generator.examples import load_examples
    from ragdistill.generator.scoring import score_answers
    from ragdistill.generator.teach import ANSWER_TEMPLATE, teacher_answers, teacher_max_new_tokens
    from ragdistill.generator.teachers import LazyTeacher, open_cache, teacher_key

    apply_run_settings(cfg)
    student = scored_student(cfg)  # fails early without a trained student
    examples = load_examples(cfg, cfg.data.test_split, cfg.generator.evaluate.max_test_questions)
    prompt = cfg.generator.prompt
    cache = open_cache(cfg)
    try:
        t_replies = teacher_answers(cfg, examples, teacher=LazyTeacher(cfg.teacher), cache=cache, desc="teacher answers (calibrate)")
    finally:
        cache.close()
    if any(r is None for r in t_replies):
        raise RagdistillError("calibrate needs the teacher's answer to every held-out question; run without run.shard")
    convs = [build_messages(e.question, e.contexts, prompt) for e in examples]
    s_replies, conf = student.replies(convs)
    s_rows, t_rows = score_answers(examples, s_replies, prompt), score_answers(examples, t_replies, prompt)
    return HeldOut(
        ids=[e.id for e in examples], confidence=conf, student_quality=[r[QUALITY] for r in s_rows],
        teacher_quality=[r[QUALITY] for r in t_rows],
        disagreement=[1.0 - rouge_l(s["answer"], [t["answer"]]) for s, t in zip(s_rows, t_rows, strict=True)],
        signal=student.signal, quality_metric=QUALITY, teacher_id=teacher_key(cfg.teacher, teacher_max_new_tokens(cfg)),
        queue=[([c], [r], ANSWER_TEMPLATE) for c, r in zip(convs, t_replies, strict=True)],
    )


def calibrate(cfg: Any) -> dict[str, Any]:
    """``ragdistill generator calibrate``: the routing threshold for the configured target, with its curve."""
    RoutingTarget.from_config(cfg.routing)  # a budget outside (0, 1) fails before any model loads
    signal_name(cfg)
    return calibrate_stage(cfg, STAGE, held_out(cfg))


class CachedTeacherGenerator:
    """The teacher as a pipeline generator whose replies go through the label cache (the key teach uses);
    keeps the last raw reply, which is what the failure queue stores."""

    def __init__(self, cfg: Any) -> None:
        from ragdistill.generator.teach import teacher_max_new_tokens
        from ragdistill.generator.teachers import LazyTeacher, open_cache, teacher_key

        self.teacher, self.cache = LazyTeacher(cfg.teacher), open_cache(cfg)
        self.prompt, self.max_new_tokens = cfg.generator.prompt, teacher_max_new_tokens(cfg)
        self.teacher_id = teacher_key(cfg.teacher, self.max_new_tokens)
        self.last_reply = ""

    def __call__(self, question: str, contexts: list[str]) -> str:
        from ragdistill.generator.teach import ANSWER_TEMPLATE
        from ragdistill.generator.teachers import answer_cached

        conv = conversation(question, contexts, self.prompt)
        self.last_reply = answer_cached(self.cache, self.teacher, [conv], ANSWER_TEMPLATE, self.max_new_tokens, desc="generator teacher (routed)")[0] or ""
        return answer_of(self.last_reply, self.prompt)[0]


def routed(cfg: Any) -> RoutedComponent:
    """``pipeline.generator=routed``: the distilled student answers; an answer whose confidence is below the
    calibrated threshold is replaced by the teacher's (and queued for the next round with ``routing.queue``)."""
    from ragdistill.generator.teach import ANSWER_TEMPLATE

    cal = load_calibration(stage_dir(cfg, STAGE, "calibrate"), STAGE)  # before loading any model
    if cal.signal not in SIGNALS:
        raise RagdistillError(f"{stage_dir(cfg, STAGE, 'calibrate')}: calibrated on signal {cal.signal!r}, not a generator signal; "
                              "rerun `ragdistill generator calibrate`")
    student = scored_student(cfg)
    student.signal = cal.signal
    teacher = CachedTeacherGenerator(cfg)
    hook = None
    if cfg.routing.queue:
        from ragdistill.common.ops.failure_queue import FailureQueue, queue_path

        queue = FailureQueue(queue_path(cfg, STAGE), teacher.cache)

        def hook(args: tuple, kwargs: dict, out: Any, conf: float) -> None:
            conv = conversation(args[0], args[1], teacher.prompt)
            queue.add(conv, teacher.last_reply, teacher.teacher_id, ANSWER_TEMPLATE, "routed", conf)

    return RoutedComponent(student, teacher, lambda *_: student.last_confidence, cal.threshold, cal.signal, hook)


def monitor_baseline(cfg: Any) -> dict[str, Any] | None:
    """What ``export`` writes for ``ragdistill monitor generator``: student-vs-teacher answer divergence on the
    first ``monitor.baseline_inputs`` held-out questions ``evaluate`` answers (teacher answers through the cache)."""
    from ragdistill.common.ops.monitor import write_baseline
    from ragdistill.generator.component import component
    from ragdistill.generator.examples import load_examples

    n = min(int(cfg.monitor.baseline_inputs), int(cfg.generator.evaluate.max_test_questions))
    if n <= 0:
        return None
    records = [{"question": e.question, "contexts": e.context_texts} for e in load_examples(cfg, cfg.data.test_split, n)]
    return write_baseline(cfg, STAGE, records, component(cfg, "student"), CachedTeacherGenerator(cfg),
                          source=f"held-out {cfg.data.test_split}: {len(records)} questions")
