#!/usr/bin/env python3
"""Checks that scenarios/README.md lists every bundled scenario file, once,
and that its "shows" column is the first sentence of the file's description,
so the table cannot drift from the files.

usage: scenario_table_check.py SCENARIOS_DIR
"""
import json
import pathlib
import re
import sys


def first_sentence(text):
    return re.split(r"(?<=\.)\s", text.strip(), maxsplit=1)[0]


def main():
    root = pathlib.Path(sys.argv[1])
    readme = (root / "README.md").read_text(encoding="utf-8").splitlines()
    problems = []
    for path in sorted(root.glob("*/*.json")):
        if path.name.endswith(".schema.json"):
            continue
        rel = path.relative_to(root).as_posix()
        rows = [l for l in readme if l.startswith("| [`" + path.name + "`](" + rel + ")")]
        if len(rows) != 1:
            problems.append(f"{rel}: {len(rows)} rows in README.md (want 1)")
            continue
        description = json.loads(path.read_text(encoding="utf-8")).get("description", "")
        shows = rows[0].rstrip().rstrip("|").rsplit("|", 1)[-1].strip()
        want = first_sentence(description)
        if shows != want:
            problems.append(f"{rel}: README.md says {shows!r}, the description's first "
                            f"sentence is {want!r}")
    for p in problems:
        print("error: " + p, file=sys.stderr)
    if problems:
        return 1
    print(f"scenario table: every file listed once, with its description's first sentence")
    return 0


if __name__ == "__main__":
    sys.exit(main())
