"""``python -m perovdb.accuracy --preset quick|full --out reports/``: run the cross-validation and write the report."""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from perovdb.accuracy.crossval import PRESETS, AccuracySettings, run_crossval
from perovdb.accuracy.report import write_report
from perovdb.config import ACCURACY_GRAPH_CACHE, ACCURACY_OUTPUT_DIR

DEFAULT_CACHE = ACCURACY_GRAPH_CACHE


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``FIELD=JSON`` strings → settings overrides (a value that is not JSON is taken as a string)."""
    overrides: dict[str, Any] = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            overrides[name] = json.loads(value)
        except json.JSONDecodeError:
            overrides[name] = value
    return overrides


def run_report(
    settings: AccuracySettings, out: Path, cache: Path | None = DEFAULT_CACHE, command: str | None = None, log: Any = print
) -> Path:
    """Run the cross-validation, save the results next to the graph cache, write the report; returns accuracy.md."""
    results = run_crossval(settings, cache, log=log)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        with open(cache / f"results-{settings.preset}.pkl", "wb") as handle:
            pickle.dump({"results": results, "command": command}, handle)
    path = write_report(results, out, command=command)
    log(f"report written to {path} ({results.seconds / 60:.1f} min)")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run every task × method of the preset, write ``<out>/accuracy.md`` and figures."""
    parser = argparse.ArgumentParser(prog="python -m perovdb.accuracy", description=__doc__)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    parser.add_argument("--out", type=Path, default=ACCURACY_OUTPUT_DIR)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="graph cache directory (reused by reruns)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                        help="override a setting, e.g. --set epochs=30 --set 'tasks=[\"hse_gap\"]'")
    parser.add_argument("--from-results", type=Path, default=None,
                        help="rewrite the report from a saved results pickle instead of rerunning")
    args = parser.parse_args(argv)
    command = "python -m perovdb.accuracy " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.from_results is not None:
        with open(args.from_results, "rb") as handle:
            saved = pickle.load(handle)
        print(write_report(saved["results"], args.out, command=saved["command"]))
        return 0
    settings = PRESETS[args.preset](**parse_overrides(args.set))

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    run_report(settings, args.out, args.cache, command, log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
