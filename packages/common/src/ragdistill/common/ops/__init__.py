"""Operations written once for every stage, on the hooks of :class:`ragdistill.common.stage.Stage`.

- :func:`calibrate` (``ragdistill <stage> calibrate``) and :func:`routed` (the ``routed`` pipeline
  variant): confidence routing between the student and the teacher (:mod:`.routing`, :mod:`.router`);
- :func:`write_monitor_baseline` (every ``export``) and ``ragdistill monitor`` (:mod:`.monitor`);
- :func:`write_cards` (every ``export`` and ``evaluate``): a model card in each exported folder (:mod:`.cards`);
- :func:`fold_queue` (``teach data.extra=queue``), :func:`next_round` and :func:`compare_rounds`
  (:mod:`.rounds`, :mod:`.failure_queue`);
- :func:`export_labels` (:mod:`.labels`);
- the commands beside the stages: ``ragdistill cost`` (:mod:`.cost`), ``cache`` (:mod:`.cache_cli`)
  and ``serve-openai`` (:mod:`.serve_openai`). (The demo runs stages and the e2e harness, so it
  lives above both, in ``ragdistill.e2e.demo``.)

Stages never import this package: it sits above them and calls their hooks.
"""

from __future__ import annotations

from typing import Any


def calibrate(stage: Any, cfg: Any) -> dict[str, Any]:
    from ragdistill.common.ops.routing import calibrate_stage

    return calibrate_stage(stage, cfg)


def routed(stage: Any, cfg: Any) -> Any:
    from ragdistill.common.ops.router import routed as _routed

    return _routed(stage, cfg)


def write_monitor_baseline(stage: Any, cfg: Any, result: Any = None) -> Any:
    from ragdistill.common.ops.monitor import write_monitor_baseline as _write

    return _write(stage, cfg, result)


def write_cards(stage: Any, cfg: Any, verb: str) -> Any:
    from ragdistill.common.ops.cards import write_cards as _write

    return _write(stage, cfg, verb)


def fold_queue(stage: Any, cfg: Any, result: Any) -> Any:
    from ragdistill.common.ops.rounds import fold_queue as _fold

    return _fold(stage, cfg, result)


def next_round(stage: Any, cfg: Any) -> Any:
    from ragdistill.common.ops.rounds import next_round as _next

    return _next(stage, cfg)


def compare_rounds(stage: Any, cfg: Any) -> Any:
    from ragdistill.common.ops.rounds import stage_compare_rounds

    return stage_compare_rounds(stage, cfg)


def export_labels(stage: Any, cfg: Any) -> Any:
    from ragdistill.common.ops.labels import export_labels as _export

    return _export(stage, cfg)
