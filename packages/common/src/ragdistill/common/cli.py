"""``ragdistill <stage> <verb> [overrides]``: every stage verb is a Hydra app.

    ragdistill --help                         stages, verbs and commands
    ragdistill embedder --help                the stage's verbs
    ragdistill embedder train --help          config groups and the composed config
    ragdistill embedder train teacher=mpnet student=minilm-l6 data.max_queries=100
    ragdistill embedder train -m embedder.train.args.learning_rate=1e-5,3e-5   (Hydra multirun: a folder per job)
    ragdistill demo                           the default main job on the bundled data (a command of ragdistill-e2e)

Errors in the user's input (data, config, missing artifacts) print one clear message and exit 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.common.logging import get_logger, offline_defaults, setup_logging

log = get_logger("ragdistill")


def _fail(msg: str) -> None:
    print(f"ragdistill: error: {msg}", file=sys.stderr)
    sys.exit(2)


def run_script(main: Callable[..., int | None], *args: Any) -> int | None:
    """Run a script's ``main`` (the bench scripts) as the CLI runs a verb: a user error is one line and exit 2,
    not a traceback, so a bench run on a busy work dir says what to do as `ragdistill` would."""
    try:
        return main(*args)
    except RagdistillError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _interrupted(None)
    return None


def _interrupted(cfg: Any) -> None:
    """Ctrl-C: one line saying what is kept, and exit 130 (the shell's code for SIGINT). Labels are
    committed batch by batch and checkpoints are written atomically, so a rerun resumes."""
    import os

    where = f" in {cfg.paths.label_cache}" if cfg is not None else ""
    sys.stderr.write(f"\nragdistill: interrupted. Teacher labels made so far are kept{where}; rerun the same "
                     "command to resume (only the missing labels are made).\n")
    sys.stderr.flush()
    os._exit(130)  # at once: no library shutdown hooks printing their own tracebacks


def run_verb(config_name: str, fn: Callable[[Any], Any], argv: list[str], job_name: str) -> None:
    """Run ``fn(cfg)`` as a Hydra app composed from ``conf/<config_name>.yaml`` plus ``argv``."""
    import hydra
    from omegaconf import DictConfig, OmegaConf

    from ragdistill.common.config import apply_run_settings
    from ragdistill.common.paths import conf_dir

    sweeps: list[str] = []

    def task(cfg: DictConfig) -> Any:
        from hydra.core.hydra_config import HydraConfig

        from ragdistill.common.config import user_overrides

        OmegaConf.resolve(cfg)
        if "overrides" in (cfg.get("run") or {}):
            cfg.run.overrides = user_overrides(list(HydraConfig.get().overrides.task))
        setup_logging(cfg.run.log_level)
        _job_work_dir(cfg, sweeps, job_name)
        apply_run_settings(cfg)
        try:
            return fn(cfg)
        except RagdistillError as e:
            _fail(str(e))
        except KeyboardInterrupt:
            _interrupted(cfg)

    from ragdistill.common.config import compose, first_of_sweeps

    if any(a in ("-h", "--help") for a in argv):
        print(verb_help(config_name, job_name, [a for a in argv if a not in ("-h", "--help")]))
        return
    if not any(a in ("-h", "--help", "--hydra-help", "-c", "--cfg", "--info") for a in argv):
        # the config checked before Hydra runs: an error is one line and exit 2, as for every user error
        compose(config_name, first_of_sweeps([a for a in argv if not a.startswith(("-", "hydra.", "hydra/"))]))
        sweeps[:] = _swept_keys(argv)
    extra = [a for a in argv]
    if not any(a.startswith("hydra.run.dir=") for a in argv):
        extra.append(f"hydra.run.dir=${{paths.work_dir}}/logs/{job_name}/${{now:%Y-%m-%d_%H-%M-%S}}")
    if not any(a.startswith("hydra.sweep.dir=") for a in argv):
        extra.append(f"hydra.sweep.dir=${{paths.work_dir}}/logs/{job_name}/multirun-${{now:%Y-%m-%d_%H-%M-%S}}")
    extra += [f"hydra.job.name={job_name}", "hydra.job.chdir=False"]
    sys.argv = [f"ragdistill {job_name.replace('.', ' ')}", *extra]
    hydra.main(version_base=None, config_path=str(conf_dir()), config_name=config_name)(task)()


def _swept_keys(argv: list[str]) -> list[str]:
    """The keys a multirun sweeps (``a=1,2``, ``range(...)``, ``choice(...)``), in command-line order;
    none when a sweep of its own already gives each job a work dir (``paths.work_dir`` swept or
    interpolated from a swept key)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not any(a in ("-m", "--multirun") for a in argv):
        return []
    parsed = OverridesParser.create().parse_overrides([a for a in argv if not a.startswith("-")])
    keys = [o.key_or_group for o in parsed if o.is_sweep_override()]
    own = [o for o in parsed if o.key_or_group == "paths.work_dir"]
    if any(o.is_sweep_override() or "${" in o.input_line for o in own):
        return []
    return keys


def _job_work_dir(cfg: Any, sweeps: list[str], job_name: str) -> None:
    """In a multirun, each job works in ``<work_dir>/multirun/<swept key=value,...>``, so jobs never
    overwrite each other's outputs (the label cache stays the shared one, resolved before). The
    folders of the stage's earlier verbs that the job lacks are linked from ``<work_dir>``: teach
    once, then ``train -m ...`` and ``evaluate -m ...`` with the same sweep find each job's own
    student. Naming the same sweep again reuses the same folders."""
    import re
    from pathlib import Path

    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from ragdistill.common.stage import VERBS

    if not sweeps or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    values = {}
    for o in HydraConfig.get().overrides.task:
        key, _, value = o.partition("=")
        values[key.lstrip("+~")] = value
    name = ",".join(f"{k}={values.get(k, '')}" for k in sweeps)
    name = re.sub(r"[^A-Za-z0-9._=,@+-]", "_", name)[:200]
    base = Path(cfg.paths.work_dir).resolve()
    job = base / "multirun" / name
    stage, verb = job_name.split(".", 1)
    upstream = VERBS[: VERBS.index(verb)] if verb in VERBS else VERBS
    for u in upstream:
        src, dst = base / stage / u, job / stage / u
        if src.is_dir() and not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(src, target_is_directory=True)
    job.mkdir(parents=True, exist_ok=True)
    cfg.paths.work_dir = str(job)
    log.info("multirun job %s: work dir %s (label cache %s)", HydraConfig.get().job.num, job, cfg.paths.label_cache)


def config_groups(config_name: str) -> dict[str, list[str]]:
    """The config groups a stage's verbs take (``group=option``) and their options: the groups its
    primary config's defaults pick, ``routing`` and the stage's own folder, each option a YAML file
    (not Hydra's structured ``*_schema`` entries, not the accelerate files under ``conf/launcher``)."""
    from omegaconf import OmegaConf

    from ragdistill.common.paths import conf_dir

    conf = conf_dir()
    names: list[str] = []
    primary = conf / f"{config_name}.yaml"
    defaults = OmegaConf.to_container(OmegaConf.load(primary)).get("defaults") or [] if primary.is_file() else []  # type: ignore[union-attr]
    for d in defaults:
        key = next(iter(d)) if isinstance(d, dict) else str(d)
        key = key.removeprefix("override ").split("@", 1)[0].strip()
        if key and not key.startswith(("hydra", "_self_")) and (conf / key).is_dir():
            names.append(key)
    names += [g for g in ("routing", config_name) if (conf / g).is_dir()]
    return {g: sorted(p.stem for p in (conf / g).glob("*.yaml") if not p.stem.endswith("_schema")) for g in dict.fromkeys(names)}


def verb_help(config_name: str, job_name: str, overrides: list[str]) -> str:
    """``ragdistill <stage> <verb> --help``: the verb, its config groups and the composed config."""
    from omegaconf import OmegaConf

    from ragdistill.common.config import compose

    stage, _, verb = job_name.partition(".")
    lines = [f"usage: ragdistill {stage} {verb} [group=option ...] [key=value ...]   (-m a=1,2 sweeps: a folder per job)", "",
             "== Configuration groups ==", "Compose your configuration from those groups (group=option)", ""]
    lines += [f"{g}: {', '.join(opts)}" for g, opts in config_groups(config_name).items()]
    cfg = compose(config_name, overrides)
    cfg.run.overrides = []
    lines += ["", "== Config ==", "Override anything in the config (foo.bar=value)", "", OmegaConf.to_yaml(cfg).rstrip(), "",
              "A config error exits 2; Ctrl-C exits 130 keeping every label made. `--hydra-help`: Hydra's own options."]
    return "\n".join(lines)


def _usage() -> str:
    from ragdistill.common.stage import load_stages

    lines = ["usage: ragdistill <stage> <verb> [key=value ...]   (Hydra overrides; --help after the verb lists them)", ""]
    lines.append("stages:")
    from ragdistill.common.ops.verbs import stage_verbs

    for s in load_stages().values():
        lines.append(f"  {s.name:<16} {s.description}")
        lines.append(f"  {'':<16} verbs: {', '.join(stage_verbs(s))}")
    lines += ["", "commands:"]
    for name, (desc, _) in _commands().items():
        lines.append(f"  {name:<16} {desc}")
    return "\n".join(lines)


def _commands() -> dict[str, tuple[str, Callable[[list[str]], None]]]:
    """Top-level commands other than stages (e2e, ...), from the ``ragdistill.commands`` entry points."""
    import importlib.metadata as md

    out = {}
    for ep in md.entry_points(group="ragdistill.commands"):
        obj = ep.load()
        out[ep.name] = (getattr(obj, "description", ""), obj)
    return out


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    offline_defaults()
    run_script(_dispatch, argv)


def _dispatch(argv: list[str]) -> None:
    """``ragdistill <command|stage verb> ...``: usage, a top-level command or a stage verb."""
    from ragdistill.common.stage import load_stages

    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return
    head, rest = argv[0], argv[1:]
    commands = _commands()
    if head in commands:
        commands[head][1](rest)
        return
    stages = load_stages()
    if head not in stages:
        _fail(f"unknown stage or command {head!r}\n\n{_usage()}")
    from ragdistill.common.ops.verbs import stage_verbs

    stage = stages[head]
    verbs = stage_verbs(stage)
    if not rest or rest[0] in ("-h", "--help"):
        print(f"ragdistill {stage.name}: {stage.description}\n\nverbs: {', '.join(verbs)}\n"
              f"usage: ragdistill {stage.name} <verb> [key=value ...]   (add --help after the verb for config groups)")
        return
    verb, overrides = rest[0], rest[1:]
    if verb not in verbs:
        _fail(f"stage {stage.name!r} has no verb {verb!r}; verbs: {', '.join(verbs)}")
    run_verb(stage.name, verbs[verb], overrides, f"{stage.name}.{verb}")


if __name__ == "__main__":
    main()
