"""Accuracy of the models on the group's real data (grouped k-fold CV of mean, RF and ALIGNN variants).

Run: ``.venv/bin/python benchmarks/accuracy.py --preset full --out reports/`` (same as
``python -m perovdb.accuracy``). Writes ``reports/accuracy.md`` and its figures; asserts nothing.
"""

from __future__ import annotations

import sys

from perovdb.accuracy.__main__ import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
