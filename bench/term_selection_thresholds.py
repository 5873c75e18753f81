#!/usr/bin/env python
"""How many words should a term-selection rewriter add? The trained selector (and the undistilled one)
at each tagging threshold, on the validation records that chose the threshold and on the held-out
CANARD test records, side by side in one run.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/term_selection_thresholds.py query_rewriter=term_selection paths.work_dir=W [key=value ...]

Needs ``ragdistill query_rewriter train`` with the same overrides. Prints, per threshold, the words
added to the follow-up question (mean), and the BM25 recall lift on validation and on test. Threshold
0 adds every conversation term: the "paste the whole conversation" query a learned selector has to
beat with fewer words. The undistilled student's untrained head is printed at its own threshold
(0.5), where it adds words at random.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

THRESHOLDS = [0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.0]


def main(argv: list[str]) -> int:
    from ragdistill.common.config import apply_run_settings, compose
    from ragdistill.common.errors import RagdistillError
    from ragdistill.common.logging import setup_logging
    from ragdistill.common.paths import student_dir
    from ragdistill.query_rewriter.evaluate import Bench
    from ragdistill.query_rewriter.student import is_term_selector, load_student
    from ragdistill.query_rewriter.train import ValidationLift, validation_set

    cfg = compose("query_rewriter", ["run.report_to=[]", "query_rewriter.evaluate.expansion_data=[]", *argv])
    setup_logging(cfg.run.log_level)
    apply_run_settings(cfg)
    model_dir = student_dir(cfg, "query_rewriter")
    if not (model_dir / "config.json").is_file() or not is_term_selector(model_dir):
        raise RagdistillError(f"{model_dir}: no trained term selector; run `ragdistill query_rewriter train query_rewriter=term_selection` "
                              "with the same paths.work_dir")
    val, test = ValidationLift(validation_set(cfg)), Bench(cfg)
    msl = int(cfg.query_rewriter.train.max_source_length)

    def words_added(outs: list[str]) -> float:
        return sum(len(o.split()) - len(e.question.split()) for o, e in zip(outs, test.rw.examples, strict=True)) / len(outs)

    student, base = load_student(str(model_dir), msl), load_student(cfg.student.model, msl, int(cfg.run.seed))
    val_outs = student.generate_at(val.val.examples, THRESHOLDS)
    test_outs = student.generate_at(test.rw.examples, THRESHOLDS)
    print(f"\n[bench term selection] {model_dir} (kept threshold {student.threshold}); "
          f"{len(val.val.records)} validation / {len(test.rw.records)} held-out test records")
    print(f"  {'threshold':>9}  {'words added':>11}  {'val lift':>8}  {'test lift':>9}")
    for t in THRESHOLDS:
        print(f"  {t:>9}  {words_added(test_outs[t]):>11.1f}  {val.score(val_outs[t])['recall_lift']:>+8.4f}  "
              f"{test.score(test_outs[t])['recall_lift']:>+9.4f}{'  <- kept' if t == student.threshold else ''}")
    base_out = base.generate(test.rw.examples)
    print(f"  undistilled (untrained head at {base.threshold}): {words_added(base_out):.1f} words added, "
          f"test lift {test.score(base_out)['recall_lift']:+.4f}")
    refs = test.reference_rows()
    print(f"  references: human rewrite {refs['ref:human_rewrite']['recall_lift']:+.4f}, "
          f"title+section+question {refs['ref:title_section_question']['recall_lift']:+.4f}")
    return 0


if __name__ == "__main__":
    from ragdistill.common.cli import run_script

    sys.exit(run_script(main, sys.argv[1:]))
