"""Fetch every data set a profile needs, up front (what ``make data`` runs).

    python -m kdutils.tools.data fetch --profile quick            # all parts
    python -m kdutils.tools.data fetch --profile full --part 4    # one part (repeatable)
    python -m kdutils.tools.data plan --profile full              # only list what is missing

The data root is the notebooks' (``--data-root``, else ``KD_DATA_ROOT``, else the quick
profile's sample folder on development machines, else ``data/``). The list of data sets,
their folders and the bytes to download come first; then each missing one is fetched
(:func:`kdutils.core.datasets.obtain`: progress bar, checksum, atomic extraction). Data sets
that cannot be fetched are listed at the end with how to get them, and the exit code is 1.
The smoke profile generates its data and needs nothing.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from kdutils.core import datasets as DS
from kdutils.core.profiles import resolve

#: The data sets each part reads, per profile (keys of ``kdutils.core.datasets.DATASETS``).
#: Part 4 also evaluates the old task on CIFAR-10; part 3 includes its search notebook.
NEEDS = {
    "quick": {1: ("cifar100",), 2: ("cifar100",), 3: ("cifar10",), 4: ("cifar10", "faces-orl"), 5: ("food-quick",)},
    "full": {1: ("cifar100",), 2: ("cifar100",), 3: ("cifar10",), 4: ("cifar10", "faces"), 5: ("food-11",)},
    "smoke": {1: (), 2: (), 3: (), 4: (), 5: ()},
}


def needed(profile: str, parts: Optional[Sequence[int]] = None) -> list:
    """The data-set keys of ``parts`` (default: all) in ``profile``, each once."""
    table = NEEDS[profile]
    unknown = [p for p in parts or () if p not in table]
    if unknown:
        raise ValueError(f"unknown part(s) {unknown}; the parts are {sorted(table)}")
    keys = [k for p in (parts or sorted(table)) for k in table[p]]
    return list(dict.fromkeys(keys))


def print_plan(rows: list, root, profile: str) -> None:
    """The table of data sets and the total download, printed before anything is fetched."""
    total = sum(r["bytes"] for r in rows)
    approx = any(r["bytes"] and not r["exact"] for r in rows)
    print(f"Data for the {profile} profile under {root}: "
          f"{DS.size_text(total, not approx)} to download ({sum(1 for r in rows if r['bytes'])} of {len(rows)} data sets)")
    for r in rows:
        if r["present"] is not None:
            state = f"present ({r['present']})"
        elif r["bytes"]:
            state = f"to download, {DS.size_text(r['bytes'], r['exact'])}"
        elif r["downloadable"]:
            state = "to unpack from the archive in the data root"
        else:
            state = "MISSING, cannot be downloaded (see the message below)"
        print(f"  {r['key']:<11} {r['title']}: {state}")
    sys.stdout.flush()


def fetch(profile: str, parts: Optional[Sequence[int]] = None, data_root: Optional[str] = None,
          dry_run: bool = False) -> int:
    """Print the plan, then obtain each missing data set; 0 when all are there, else 1."""
    setup = resolve(profile, data_root)
    keys = needed(setup.profile, parts)
    if setup.data_root is None or not keys:
        print(f"The {setup.profile} profile generates its data; nothing to fetch.")
        return 0
    rows = DS.plan(keys, setup.data_root)
    print_plan(rows, setup.data_root, setup.profile)
    if dry_run:
        return 0 if all(r["present"] is not None for r in rows) else 1
    failed = []
    for r in rows:
        if r["present"] is None:
            try:
                DS.obtain(r["key"], setup.data_root)
                print(f"{r['key']}: ready in {r['folder']}")
            except DS.DataUnavailable as e:
                failed.append(f"- {e}")
    if failed:
        print(f"\n{len(failed)} data set(s) could not be obtained:\n" + "\n".join(failed), file=sys.stderr)
        return 1
    print(f"All data for the {setup.profile} profile is under {setup.data_root}.")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kdutils.tools.data", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    for name, text in (("fetch", "fetch what is missing"), ("plan", "list what is missing, fetch nothing")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--profile", default=None, help="quick | full | smoke (default: KD_PROFILE, else quick)")
        p.add_argument("--part", type=int, action="append", help="only this part's data (repeatable)")
        p.add_argument("--data-root", default=None, help="where the data live (default: KD_DATA_ROOT, else data/)")
    args = ap.parse_args(argv)
    try:
        return fetch(args.profile, args.part, args.data_root, dry_run=args.command == "plan")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
