"""The generator stage: its four verbs and the hooks calibrate, routing, the monitor and rounds run on.

A held-out record is one test question as the pipeline contract passes it: ``question``,
``contexts`` (:class:`~ragdistill.common.pipeline.Passage` texts carrying their titles) and the
reference ``answers``; its conversation is the one ``teach`` and ``evaluate`` build, so the
teacher's answers to it come from the label cache under the same key. Predictor outputs are the
models' raw replies (:class:`~ragdistill.generator.scoring.Reply`, which carries the parsed
answer); quality and disagreement compare answers.
"""

from __future__ import annotations

from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.common.stage import Predictor, QueueItem, Record, Scorer, Stage
from ragdistill.generator.config import GeneratorConfig
from ragdistill.generator.variants import VARIANTS as GENERATOR_VARIANTS


class GeneratorStage(Stage):
    name = "generator"
    description = "Teacher answers over retrieved contexts -> filtered -> LoRA/QLoRA SFT, GKD; merged, vLLM-ready export"
    schema = GeneratorConfig
    order = 40
    slot = "generator"  # the e2e pipeline slot it fills
    teacher_capability = "generate"
    # student_onnx / student_onnx_int8: the ONNX exports on onnxruntime; student_export: the bf16 export folder
    # (the one vLLM serves) on transformers; endpoint: any OpenAI-compatible server (generator.endpoint)
    variants = GENERATOR_VARIANTS
    call_fields = ("question", "contexts")
    signals = ("mean_logprob", "min_logprob", "sample_agreement")
    quality_metric = "token_f1"
    output_field = "answer"  # a monitor log line may carry the student's answer: it is not generated again

    # ---- nouns (the four verbs are the base class's: ragdistill.generator.<verb>.<verb>(cfg))

    def teacher(self, cfg: Any) -> Any:
        from ragdistill.generator.teachers import answer_teacher

        return answer_teacher(cfg)

    def label_teacher_ids(self, cfg: Any) -> list[str]:
        """The teacher's answers, the undistilled student's (evaluate caches them too; both ship in
        ``data/labels/generator-squad.jsonl.gz``) and the judge's when the judge filter is on."""
        from ragdistill.generator.teachers import judge_teacher, undistilled_teacher

        ids = [self.teacher(cfg).teacher_id, undistilled_teacher(cfg).teacher_id]
        if cfg.generator.teach.filters.judge.enabled:
            ids.append(judge_teacher(cfg).teacher_id)
        return list(dict.fromkeys(ids))

    def _model_path(self, cfg: Any, variant: str) -> str:
        from ragdistill.generator.variants import model_path

        return model_path(cfg, variant)

    def generator(self, cfg: Any, variant: str, batch_size: int = 1) -> Any:
        """The raw-reply generator (``generate(conversations) -> list[str]``) of a student variant or the endpoint."""
        from ragdistill.generator.variants import generator

        return generator(cfg, variant, batch_size)

    def component(self, cfg: Any, variant: str) -> Any:
        """``(question, contexts) -> answer`` of ``teacher`` (live, as the pipeline times it),
        ``student_base``, ``student`` (merged, from train), ``student_onnx`` / ``student_onnx_int8`` (the
        ONNX exports on onnxruntime), ``student_export`` (the bf16 export on transformers) or ``endpoint``
        (an OpenAI-compatible server, e.g. ``vllm serve`` of the export: ``generator.endpoint``)."""
        from ragdistill.common.data import Document
        from ragdistill.common.models import resolve_model
        from ragdistill.generator.prompts import build_messages
        from ragdistill.generator.scoring import answer_of
        from ragdistill.generator.teachers import answer_teacher

        prompt = cfg.generator.prompt
        path: str | None = None
        if variant == "teacher":
            gen: Any = answer_teacher(cfg)
            path = resolve_model(cfg.teacher.model) if cfg.teacher.backend == "causal_lm" else None
        else:
            gen = self.generator(cfg, variant)
            path = getattr(gen, "model_path", None)

        def answer(question: str, contexts: list[str]) -> str:
            # the passages' titles are not shown here, as before the stage class (calibrate, routing and the
            # monitor build the titled conversation teach uses: prompts.conversation)
            docs = [Document(f"c{i}", c) for i, c in enumerate(contexts)]
            return answer_of(gen.generate([build_messages(question, docs, prompt)])[0], prompt)[0]

        if path is not None:  # the harness reports its size on disk (a teacher may be remote: no path)
            answer.model_path = path  # type: ignore[attr-defined]
        return answer

    def held_out(self, cfg: Any, n: int | None = None) -> list[Record]:
        """The first ``n`` (at most ``evaluate.max_test_questions``) test questions evaluate answers."""
        from ragdistill.generator.examples import load_examples

        limit = int(cfg.generator.evaluate.max_test_questions)
        k = limit if n is None else min(int(n), limit)
        if k <= 0:
            return []
        return [{"id": e.id, "question": e.question, "contexts": e.context_texts, "answers": list(e.answers)}
                for e in load_examples(cfg, cfg.data.test_split, k)]

    def conversation(self, cfg: Any, record: Record) -> list[dict[str, str]]:
        """A record as the chat teach labels and the student was trained on."""
        from ragdistill.generator.prompts import conversation

        return conversation(record["question"], record.get("contexts") or [], cfg.generator.prompt)

    def predictor(self, cfg: Any, variant: str) -> Predictor:
        """Raw replies of ``variant`` for records, batched: the teacher's and the undistilled student's
        through the label cache (the keys evaluate uses), the distilled student's and the export's generated."""
        from ragdistill.generator.scoring import Reply
        from ragdistill.generator.teachers import ANSWER_TEMPLATE, answer_teacher, undistilled_teacher

        prompt = cfg.generator.prompt
        if variant in ("teacher", "student_base"):
            cached = answer_teacher(cfg) if variant == "teacher" else undistilled_teacher(cfg)

            def generate(convs: list[Any]) -> list[str]:
                return cached.labels(convs, ANSWER_TEMPLATE, desc=f"generator {variant} answers")

            model_path = None
        else:
            gen = self.generator(cfg, variant, int(cfg.generator.evaluate.batch_size))
            model_path = getattr(gen, "model_path", None)
            generate = gen.generate

        def predict(records: list[Record]) -> list[Any]:
            if not records:
                return []
            return [Reply.parse(r, prompt) for r in generate([self.conversation(cfg, rec) for rec in records])]

        predict.model_path = model_path  # type: ignore[attr-defined]
        return predict

    def scorer(self, cfg: Any, signal: str) -> Scorer:
        """The distilled student's greedy replies with a confidence each (``signal``: the mean or the
        minimum token log-probability of its answer, or its agreement with one sampled answer)."""
        from ragdistill.common.config import apply_run_settings
        from ragdistill.generator.scoring import Reply
        from ragdistill.generator.students import ScoredStudent

        if signal not in self.signals:
            raise RagdistillError(f"routing.signal={signal!r}: the generator routes on {', '.join(self.signals)}; choose one of those")
        apply_run_settings(cfg)
        g = cfg.generator
        path = self._model_path(cfg, "student")  # fails early without a trained student
        student = ScoredStudent(path, g.prompt, int(g.student_max_new_tokens), signal, int(g.evaluate.batch_size), int(cfg.run.seed))

        def score(records: list[Record]) -> tuple[list[Any], list[float]]:
            raw, conf = student.replies([self.conversation(cfg, r) for r in records])
            return [Reply.parse(x, g.prompt) for x in raw], conf

        score.model_path = path  # type: ignore[attr-defined]
        return score

    def as_output(self, output: Any, record: Record) -> Any:
        """The contract's answer: the reply's answer as the prompt's format reads it."""
        from ragdistill.generator.scoring import answer_text

        return answer_text(output)

    def quality(self, cfg: Any, records: list[Record], outputs: list[Any]) -> list[float]:
        """Token F1 of each reply's answer against the record's references (SQuAD's answer F1)."""
        from ragdistill.common.answer_metrics import token_f1
        from ragdistill.generator.scoring import answer_of

        prompt = cfg.generator.prompt
        return [token_f1(answer_of(str(o), prompt)[0], r.get("answers") or [""]) for r, o in zip(records, outputs, strict=True)]

    def disagreement(self, record: Record, student: Any, teacher: Any) -> float:
        """1 - ROUGE-L of the student's answer against the teacher's."""
        from ragdistill.common.answer_metrics import rouge_l
        from ragdistill.generator.scoring import answer_text

        return 1.0 - rouge_l(answer_text(student), [answer_text(teacher)])

    def divergence_metrics(self, records: list[Record], student: list[Any], teacher: list[Any]) -> dict[str, float]:
        """The monitor's figures: ROUGE-L and token-F1 agreement of the answers; divergence = 1 - ROUGE-L agreement."""
        import numpy as np

        from ragdistill.common.answer_metrics import rouge_l, token_f1
        from ragdistill.generator.scoring import answer_text

        pairs = [(answer_text(s), answer_text(t)) for s, t in zip(student, teacher, strict=True)]
        rl = [rouge_l(s, [t]) for s, t in pairs]
        f1 = [token_f1(s, [t]) for s, t in pairs]
        return {"rouge_l_agreement": float(np.mean(rl)), "token_f1_agreement": float(np.mean(f1)), "divergence": float(1 - np.mean(rl))}

    def queue_examples(self, cfg: Any, record: Record, teacher_output: Any) -> list[QueueItem]:
        """The record's conversation with the teacher's raw reply: the label teach would make."""
        from ragdistill.generator.teachers import ANSWER_TEMPLATE

        return [(self.conversation(cfg, record), str(teacher_output), ANSWER_TEMPLATE)]

    def add_training_examples(self, cfg: Any, items: list[QueueItem]) -> dict[str, Any]:
        from ragdistill.generator.teach import add_queued_examples

        return add_queued_examples(cfg, items)
