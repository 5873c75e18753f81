"""Confidence routing between a stage's student and its teacher (see docs/routing.md).

- :mod:`.signals`: per-input confidence of the student (log-probs, sample agreement, score margin,
  entropy), all oriented so that higher means more sure;
- :mod:`.calibrate`: pick the threshold on held-out data for a teacher-call budget or a quality
  target, and write the quality-vs-teacher-fraction curve next to random routing;
- :mod:`.component`: :class:`RoutedComponent`, the ``routed`` pipeline variant.
"""

from ragdistill.common.routing.calibrate import (
    Calibration,
    HeldOut,
    RoutingTarget,
    calibrate,
    calibrate_stage,
    evaluate_threshold,
    load_calibration,
    route_mask,
    routing_curve,
    run_calibration,
    write_calibration,
)
from ragdistill.common.routing.component import RoutedComponent, queue_on_teacher
from ragdistill.common.routing.signals import SIGNALS, get_signal

__all__ = ["SIGNALS", "Calibration", "HeldOut", "RoutedComponent", "RoutingTarget", "calibrate", "calibrate_stage",
           "evaluate_threshold", "get_signal",
           "load_calibration", "queue_on_teacher", "route_mask", "routing_curve", "run_calibration", "write_calibration"]
