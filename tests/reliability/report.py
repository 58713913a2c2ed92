#!/usr/bin/env python3
"""Renders the reliability suite's records into docs/reliability.md.

The suite (`cargo test`, module `reliability`) writes one JSON record per
item to target/reliability/. `--write` regenerates the tables of the report
between its markers; `--check` (run by CI) fails when the report and the
records disagree on any item, its cases or its passes, when an item failed,
or when a load run lost or leaked anything.
"""
import json
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
RECORDS = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "reliability"
REPORT = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- results: begin -->", "<!-- results: end -->"
CLASSES = ["Hostile input", "Faults", "Load", "Access"]


def records():
    out = [json.loads(p.read_text()) for p in sorted(RECORDS.glob("*.json"))]
    if not out:
        sys.exit(f"no records in {RECORDS}: run `cargo test` first")
    unknown = {r["class"] for r in out} - set(CLASSES)
    if unknown:
        sys.exit(f"records with unknown classes: {sorted(unknown)}")
    return out


def figures_text(f):
    return ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in f.items())


def render(recs):
    lines = []
    for cls in CLASSES:
        rows = sorted((r for r in recs if r["class"] == cls), key=lambda r: r["item"])
        if not rows:
            continue
        cases = sum(r["cases"] for r in rows)
        passed = sum(r["passed"] for r in rows)
        lines += [f"### {cls}: {passed} of {cases} cases passed", "",
                  "| what was tried | cases | passed |", "|---|---|---|"]
        lines += [f"| {r['item']} | {r['cases']} | {r['passed']} |" for r in rows]
        lines.append("")
        for r in rows:
            if "figures" in r:
                lines.append(f"- **{r['item']}**: {figures_text(r['figures'])}")
        if any("figures" in r for r in rows):
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def table_rows(text):
    """(class, item) -> (cases, passed) from a rendered block."""
    rows, cls = {}, None
    for line in text.splitlines():
        if line.startswith("### "):
            cls = line[4:].split(":")[0]
        elif line.startswith("| ") and not line.startswith("| what") and cls:
            item, cases, passed = [c.strip() for c in line.strip("|").rsplit("|", 2)]
            rows[(cls, item)] = (int(cases), int(passed))
    return rows


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "--check"
    recs = records()
    block = render(recs)
    doc = REPORT.read_text()
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    if mode == "--write":
        REPORT.write_text(f"{head}{BEGIN}\n{block}{END}{tail}")
        print(f"wrote {REPORT.relative_to(ROOT)}: {len(recs)} items")
        return
    problems = []
    for r in recs:
        if r["passed"] != r["cases"]:
            problems.append(f"{r['item']}: {r['passed']} of {r['cases']} passed")
        f = r.get("figures", {})
        for k in ("failed", "leaked"):
            if f.get(k, 0) != 0:
                problems.append(f"{r['item']}: {k} = {f[k]}")
    have = table_rows(rest.split(END, 1)[0])
    want = table_rows(block)
    for key in sorted(set(have) | set(want)):
        if have.get(key) != want.get(key):
            problems.append(f"report out of step for {key}: report {have.get(key)}, suite {want.get(key)}")
    if problems:
        print("docs/reliability.md and the suite disagree:", *problems, sep="\n  ")
        print("run `cargo test` then `python3 tests/reliability/report.py --write`")
        sys.exit(1)
    print(f"docs/reliability.md is in step with the suite: {len(recs)} items, all passed")


if __name__ == "__main__":
    main()
