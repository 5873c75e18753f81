"""``ragdistill cache merge OUT SHARD...``, ``cache stats PATH...`` and ``cache check PATH [--salvage OUT]``.

A job array (Slurm, Kubernetes Jobs) runs ``ragdistill <stage> teach run.launcher=shards
run.shard=i/n`` once per index; each writes ``<label_cache>.shard-i-of-n``. ``cache merge`` joins
them into one cache, refusing a key whose value differs between files, and reports counts.
"""

from __future__ import annotations

import argparse
import json

from ragdistill.common.cache import cache_stats, check_cache, merge_caches


def cache_command(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="ragdistill cache", description=cache_command.description)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("merge", help="join shard cache files into OUT (created or extended); conflicting values are an error")
    m.add_argument("out", help="the merged cache file, e.g. work/cache/labels.sqlite")
    m.add_argument("shards", nargs="+", help="cache files to join, e.g. work/cache/labels.sqlite.shard-*-of-4")
    m.add_argument("--atol", type=float, default=0.0,
                   help="embedding labels within this absolute tolerance count as equal (default 0: byte-identical)")
    s = sub.add_parser("stats", help="rows per teacher and per value kind")
    s.add_argument("paths", nargs="+")
    s.add_argument("--json", action="store_true", help="print JSON")
    c = sub.add_parser("check", help="verify a label cache; with --salvage, copy every readable label into a new file")
    c.add_argument("path")
    c.add_argument("--salvage", metavar="OUT", default=None, help="a new cache file for the readable labels (PATH is never written)")
    a = p.parse_args(argv)
    if a.cmd == "check":
        report = check_cache(a.path, a.salvage)
        print(report.summary())
        if not report.ok and a.salvage is None:
            raise SystemExit(1)
        return
    if a.cmd == "merge":
        print(merge_caches(a.out, a.shards, atol=a.atol).summary())
        return
    for path in a.paths:
        st = cache_stats(path)
        if a.json:
            print(json.dumps(st))
            continue
        print(f"{st['path']}: {st['rows']} rows, {st['bytes'] / 1e6:.2f} MB, " + ", ".join(f"{k} {v}" for k, v in sorted(st["kinds"].items())))
        for teacher, n in st["teachers"].items():
            print(f"  {n:>9}  {teacher or '(no teacher id)'}")


cache_command.description = "merge shard label caches (launcher=shards) into one; print stats; check a damaged cache and salvage it"
