"""Compare the run records of two output roots: are the training histories identical?

The regression check of a refactor: run the same notebooks with the same profile and seeds
before and after the change, each into its own ``KD_OUTPUT_ROOT``, then::

    python -m kdutils.tools.compare_records BEFORE_ROOT AFTER_ROOT --profile quick --parts part2,part3

Every record of ``BEFORE_ROOT/results/<profile>/<part>/`` is matched by name with the
one of ``AFTER_ROOT``; their per-epoch histories must be equal value for value (wall-clock
columns left out), and so must the settings that decide what was computed (parameters,
epochs, precision, memory layout, parameter count). On the CPU a change that keeps
behaviour gives bit-identical histories. Exit code 0 when every record matches, 1 when
one differs or is missing.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional, Sequence

#: History columns that measure time, not computation.
TIMING = ("seconds", "eval_seconds")
#: Record fields that decide what a run computed.
SETTINGS = ("params", "epochs", "amp", "channels_last", "n_params", "seed")


def history(record: dict) -> list:
    """The record's history without its timing columns."""
    return [{k: v for k, v in row.items() if k not in TIMING} for row in record.get("history", [])]


def compare_pair(before: dict, after: dict) -> list:
    """Human-readable differences between two records of one run (empty: identical)."""
    out = [f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in SETTINGS if before.get(k) != after.get(k)]
    hb, ha = history(before), history(after)
    if len(hb) != len(ha):
        out.append(f"epochs recorded: {len(hb)} -> {len(ha)}")
    for rb, ra in zip(hb, ha):
        diff = {k: (rb.get(k), ra.get(k)) for k in sorted(set(rb) | set(ra)) if rb.get(k) != ra.get(k)}
        if diff:
            out.append(f"epoch {rb.get('epoch')}: " + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in diff.items()))
    return out


def compare_roots(before: Path, after: Path, profile: str, parts: Sequence[str]) -> list:
    """One row per record of ``before``: ``(part/run, status, details)``, status being
    ``identical``, ``different`` or ``missing``."""
    rows = []
    for part in parts:
        folder = Path(before) / "results" / profile / part
        files = sorted(folder.glob("*.json"))
        if not files:
            raise FileNotFoundError(f"no records under {folder}: run the notebooks of {part} into {before} first")
        for f in files:
            other = Path(after) / "results" / profile / part / f.name
            name = f"{part}/{f.stem}"
            if not other.exists():
                rows.append((name, "missing", [f"no {other}"]))
                continue
            diffs = compare_pair(json.loads(f.read_text()), json.loads(other.read_text()))
            rows.append((name, "different" if diffs else "identical", diffs))
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Compare the run histories of two KD_OUTPUT_ROOTs (a regression check).")
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--parts", default="part2,part3", help="comma-separated record folders (default: part2,part3)")
    args = ap.parse_args(argv)
    try:
        rows = compare_roots(args.before, args.after, args.profile, [p for p in args.parts.split(",") if p])
    except FileNotFoundError as missing:
        print(missing)
        return 1
    for name, status, details in rows:
        print(f"{status.upper():10s} {name}")
        for line in details[:5]:
            print(f"           {line}")
    counts = {s: sum(1 for _, st, _ in rows if st == s) for s in ("identical", "different", "missing")}
    print(f"{counts['identical']} identical, {counts['different']} different, {counts['missing']} missing")
    return 0 if counts["identical"] == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
