"""``ragdistill <stage> export <stage>.export.push_to_hub=<org/name>``: the export, with its model
cards, pushed to the Hugging Face Hub through ``huggingface_hub`` (``create_repo`` + ``upload_folder``).

The stage's main folder (``export/model``) is the repo's root, so ``SentenceTransformer("<org/name>")``
or ``AutoModelForCausalLM.from_pretrained("<org/name>")`` loads it; the other exported folders
(``adapter/``, ``onnx/``, ``colbert/``, ...) go to subfolders of the same name. Before anything is
sent, the plan (each file, its size, where it goes) is written to ``export/push_plan.json`` with
the same file filter ``upload_folder`` applies. ``<stage>.export.push_dry_run=true``, or no network
(``HF_HUB_OFFLINE=1``), stops there: the plan is what would be uploaded. ``evaluate`` pushes the
refreshed cards of a pushed export again (README.md files only).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import read_json, write_json
from ragdistill.common.logging import get_logger
from ragdistill.common.paths import stage_dir

log = get_logger(__name__)
PLAN = "push_plan.json"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def push_plan(repo_id: str, folders: list[Path], main: Path, only: list[str] | None = None) -> dict[str, Any]:
    """What ``upload_folder`` would send: per folder, the files its filter keeps (``only``: a subset of
    names, e.g. README.md), where each lands in the repo, and its size."""
    from huggingface_hub import ModelCard
    from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

    uploads = []
    for folder in folders:
        rel = sorted(p.relative_to(folder).as_posix() for p in folder.glob("**/*") if p.is_file())
        keep = list(filter_repo_objects(rel, allow_patterns=only, ignore_patterns=list(DEFAULT_IGNORE_PATTERNS)))
        if "README.md" in keep:
            ModelCard.load(folder / "README.md")  # the card's metadata parses (upload_folder checks it too)
        in_repo = "" if folder == main else folder.name
        uploads.append({"folder": str(folder), "path_in_repo": in_repo,
                        "files": [{"path": f"{in_repo}/{f}" if in_repo else f, "bytes": (folder / f).stat().st_size} for f in keep]})
    return {"repo_id": repo_id, "uploads": uploads, "n_files": sum(len(u["files"]) for u in uploads),
            "bytes": sum(f["bytes"] for u in uploads for f in u["files"])}


def push_export(stage: Any, cfg: Any, folders: list[Path], verb: str) -> dict[str, Any] | None:
    """Push the exported folders to ``<stage>.export.push_to_hub`` (see the module docstring)."""
    ecfg = cfg[stage.name].get("export") or {}
    repo_id = ecfg.get("push_to_hub")
    if not repo_id or not folders:
        return None
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/")):
        raise RagdistillError(f"{stage.name}.export.push_to_hub={repo_id!r}: give a hub repo id, <user or org>/<name>")
    out = stage_dir(cfg, stage.name, "export")
    main = Path(read_json(out / "export.json").get("model") or "") if (out / "export.json").is_file() else folders[0]
    main = main if main in folders else folders[0]
    only = ["README.md"] if verb == "evaluate" else None
    plan = push_plan(repo_id, folders, main, only)
    dry = bool(ecfg.get("push_dry_run")) or _offline()
    plan["dry_run"] = dry
    write_json(out / PLAN, plan)
    if dry:
        why = "push_dry_run=true" if ecfg.get("push_dry_run") else "HF_HUB_OFFLINE=1: no network"
        log.info("push_to_hub %s (dry run, %s): %d files, %.1f MB would be uploaded; the plan: %s", repo_id, why, plan["n_files"],
                 plan["bytes"] / 2**20, out / PLAN)
        return plan
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo_id, exist_ok=True, private=bool(ecfg.get("push_private", True)))
        for u in plan["uploads"]:
            api.upload_folder(repo_id=repo_id, folder_path=u["folder"], path_in_repo=u["path_in_repo"], allow_patterns=only,
                              commit_message=f"ragdistill {stage.name} {verb}: {Path(u['folder']).name}")
    except Exception as e:  # no token, no network, no rights: say which and keep the export
        raise RagdistillError(f"push_to_hub {repo_id}: {type(e).__name__}: {str(e).splitlines()[0][:300]}. The export is kept in {out}; "
                              "log in (`hf auth login` or HF_TOKEN) and rerun the export, or check the plan in "
                              f"{out / PLAN} with {stage.name}.export.push_dry_run=true") from None
    log.info("pushed %d files to https://huggingface.co/%s", plan["n_files"], repo_id)
    return plan
