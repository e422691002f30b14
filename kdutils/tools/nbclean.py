"""Strip outputs and execution counts from notebooks (``python -m kdutils.tools.nbclean FILES``),
and check that they are clean (``--check``, used by the tests)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def dirty_cells(nb: dict) -> int:
    return sum(1 for c in nb.get("cells", []) if c.get("outputs") or c.get("execution_count"))


def strip(nb: dict) -> dict:
    for c in nb.get("cells", []):
        if c.get("cell_type") == "code":
            c["outputs"] = []
            c["execution_count"] = None
        c.get("metadata", {}).pop("execution", None)
        c.get("metadata", {}).pop("papermill", None)
    nb.get("metadata", {}).pop("papermill", None)
    return nb


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--check", action="store_true", help="only report notebooks with outputs; exit 1 if any")
    args = ap.parse_args(argv)
    bad = 0
    for f in args.files:
        nb = json.loads(f.read_text())
        n = dirty_cells(nb)
        if args.check:
            if n:
                print(f"{f}: {n} cells carry outputs or execution counts (run `make strip`)")
                bad += 1
            continue
        f.write_text(json.dumps(strip(nb), indent=1, ensure_ascii=False) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
