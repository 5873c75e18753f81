"""The shipped teacher labels (data/labels/query_rewriter.jsonl) keep hitting the label cache: every
label the default teach and evaluate read, and the demo's, is found under the key the stage makes,
so no teacher model is needed (a teacher that would load is an error here)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from ragdistill.common.paths import project_home
from ragdistill.query_rewriter import stage


class _NoLoad:
    """A backend that must never be reached: every label has to come from the shipped file."""

    teacher_id = "must-not-load"

    def generate(self, conversations, **overrides):
        raise AssertionError(f"a shipped label missed the cache: {len(conversations)} conversations were sent to the teacher")


def _labelled_from_the_shipped_file(cfg, examples):
    from ragdistill.query_rewriter.labels import teacher_outputs

    teacher = stage.teacher(cfg)
    teacher._backend = _NoLoad()  # a cache miss would call it
    with teacher:
        outs, runs = teacher_outputs(cfg, teacher, examples, complete=True)
    assert all(isinstance(o, str) for o in outs)
    return {t: (r.total, r.cached, r.labelled) for t, r in runs.items()}


def test_the_default_teach_and_evaluate_read_only_shipped_labels(make_cfg):
    from ragdistill.query_rewriter.evaluate import Bench
    from ragdistill.query_rewriter.teach import training_examples

    cfg = make_cfg("query_rewriter")
    assert list(cfg.query_rewriter.teach.shipped_labels) == ["data/labels/query_rewriter*.jsonl"]
    # 639 taught records (one of the first 640 is a teacher example) + 16 train queries each of SciFact and SQuAD
    assert _labelled_from_the_shipped_file(cfg, training_examples(cfg)) == {"rewrite": (639, 639, 0), "expansion": (32, 32, 0)}
    # 200 held-out test records + 16 SciFact test queries: 639 + 32 + 200 + 16 = the 887 shipped labels
    assert _labelled_from_the_shipped_file(cfg, Bench(cfg).examples) == {"rewrite": (200, 200, 0), "expansion": (16, 16, 0)}
    with stage.teacher(cfg) as t:
        assert len(t.cache) == 887 and t.teacher_id == "causal_lm:qwen2.5-0.5b-instruct:T=0.0"


def test_the_demo_reads_only_shipped_labels(make_cfg):
    from ragdistill.query_rewriter.teach import training_examples

    demo = OmegaConf.load(project_home() / "conf/demo.yaml").overrides.query_rewriter
    cfg = make_cfg("query_rewriter", list(demo))
    assert _labelled_from_the_shipped_file(cfg, training_examples(cfg)) == {"rewrite": (16, 16, 0), "expansion": (2, 2, 0)}


def test_term_selection_reads_the_same_labels(make_cfg):
    """The term-selection student's config changes the student, not how the teacher is asked."""
    from ragdistill.query_rewriter.labels import task_template

    plain, ts = make_cfg("query_rewriter"), make_cfg("query_rewriter", ["query_rewriter=term_selection"])
    assert [task_template(ts, t) for t in ("rewrite", "expansion")] == [task_template(plain, t) for t in ("rewrite", "expansion")]
    assert stage.teacher(ts).teacher_id == stage.teacher(plain).teacher_id


@pytest.mark.parametrize("override", ["query_rewriter.teach.rewrite_max_new_tokens=16", "query_rewriter.teach.max_turns=3",
                                      "teacher.temperature=0.7"])
def test_another_prompt_or_teacher_is_another_key(make_cfg, override):
    """A label is keyed by what made it: a changed budget, history window or teacher never serves a stale one."""
    from ragdistill.query_rewriter.labels import label_teacher_id, task_template

    a, b = make_cfg("query_rewriter"), make_cfg("query_rewriter", [override])
    assert (task_template(a, "rewrite"), label_teacher_id(a.teacher)) != (task_template(b, "rewrite"), label_teacher_id(b.teacher))
