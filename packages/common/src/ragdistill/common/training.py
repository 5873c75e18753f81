"""Training arguments: a stage extends the library's arguments, it does not mirror them.

Each stage's ``train`` config holds what distillation adds (losses, temperatures, what to label)
plus ``args``: a mapping passed as is to the trainer library's own arguments class
(``TrainingArguments``, ``SentenceTransformerTrainingArguments``, ``CrossEncoderTrainingArguments``,
TRL's ``SFTConfig`` / ``GKDConfig`` / ``GOLDConfig``), so every option of the library is there
under its own name (``<stage>.train.args.learning_rate=1e-4``,
``'+<stage>.train.args.lr_scheduler_type=cosine'``) and its defaults apply unless the stage sets
one. A key the class does not have is an error naming it and the class.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ragdistill.common.errors import RagdistillError


def _plain(args: Any) -> dict[str, Any]:
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(args):
            return dict(OmegaConf.to_container(args, resolve=True))  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover
        pass
    return dict(args or {})


def build_training_args(cls: type, args: Mapping[str, Any] | Any, where: str, **fixed: Any) -> Any:
    """``cls(**args, **fixed)``: ``args`` from the user's config (``where`` names it in errors),
    ``fixed`` what the stage decides itself (output_dir, report_to, ...), which ``args`` may not set."""
    given = _plain(args)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(given) - known)
    if unknown:
        import difflib

        hints = [f"{k} (did you mean {difflib.get_close_matches(k, known, 1)[0]}?)" if difflib.get_close_matches(k, known, 1) else k
                 for k in unknown]
        raise RagdistillError(f"{where}: {', '.join(hints)} is not an argument of {cls.__module__}.{cls.__name__}")
    clash = sorted(set(given) & set(fixed))
    if clash:
        raise RagdistillError(f"{where}: {', '.join(clash)} is set by the stage itself; remove it from {where}")
    try:
        return cls(**given, **fixed)
    except (TypeError, ValueError) as e:
        raise RagdistillError(f"{where}: {cls.__name__} rejects these arguments: {e}") from None


def check_base_weight(base_weight: float, where: str) -> None:
    """Fail before training, not after it, on a merge share outside [0, 1]."""
    if not 0.0 <= base_weight <= 1.0:
        raise RagdistillError(f"{where}={base_weight}: the undistilled student's share must be in [0, 1] (0 = the distilled weights as trained)")


def merge_with_base(model: Any, base: Any, base_weight: float, where: str) -> int:
    """Move ``model``'s weights toward ``base``'s in place: ``(1 - w) * trained + w * base``.

    WiSE-FT (Wortsman et al., 2022): the weight-space midpoint of a fine-tuned model and the model
    it started from keeps most of the in-domain gain and most of the start's robustness on data
    fine-tuning never saw. ``base`` is a module of the same architecture (the undistilled student);
    returns the number of tensors merged. ``where`` names the setting in errors.
    """
    import torch

    check_base_weight(base_weight, where)
    if base_weight == 0.0:
        return 0
    theirs = base.state_dict()
    ours = model.state_dict()
    odd = sorted(k for k, v in ours.items() if v.is_floating_point() and (k not in theirs or theirs[k].shape != v.shape))
    if odd:
        raise RagdistillError(f"{where}: the base model differs in {odd[:3]}; it must be the student's own starting checkpoint")
    n = 0
    with torch.no_grad():
        for k, v in ours.items():
            if v.is_floating_point():
                v.mul_(1.0 - base_weight).add_(theirs[k].to(v), alpha=base_weight)
                n += 1
    return n
