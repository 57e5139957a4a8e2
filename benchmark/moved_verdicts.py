"""Which verdicts moved between an earlier report and today's: each comparison (`x` vs `y` on an env) that both
tables give a verdict, the two verdicts side by side where they differ. The report owes one sentence on why for each.

    python benchmark/moved_verdicts.py --before 2890aa4        # the last report on the code before the fix of 259eb5e
"""

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

ROOT = Path(__file__).resolve().parents[1]
REPORT = "docs/reproduction.md"


@dataclass
class Args:
    before: str = "2890aa4"
    """the git ref of the earlier report"""


def verdicts(text):
    """{(x, y, env, measure): verdict} of a report's table: a row's comparison is the `x` vs `y` of its claim (a row
    with an empty claim cell continues the one above), and `x` vs the untrained model's setting where the row gives
    one. The measure (the metric's tag, and its threshold if any) tells apart two claims on the same pair, such as
    fig4_per's env steps and visitation."""
    found, pairs, measure = {}, [], ""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| ") or len(cells) < 4 or cells[1] in ("env", "") or set(cells[1]) <= {"-"}:
            continue
        if cells[0]:  # a new claim, or a row of another table (no comparison in it)
            pair, untrained = (
                re.search(r"`([\w.:-]+)` vs `([\w.:-]+)`", cells[0]),
                re.search(r"\(untrained: `([\w.:-]+)`\)", cells[0]),
            )
            pairs = ([pair.groups()] if pair else []) + ([(pair.group(1), untrained.group(1))] if pair and untrained else [])
            tag = re.search(r"\b((?:charts|eval|losses)/\w+)(?: >= ([\d.]+))?", cells[0])
            measure = " >= ".join(filter(None, tag.groups())) if tag else ""
        bold = re.findall(r"\*\*([^*]+)\*\*|(pending)", " | ".join(cells[3:]))
        for (x, y), (verdict, pending) in zip(pairs, bold, strict=False):
            if not pending:
                found[(x, y, cells[1], measure)] = verdict
    return found


def moved(before, after):
    """Lines for the comparisons whose verdict differs between the two reports (an inconclusive one at another number
    of seeds has not moved)."""
    old, new = verdicts(before), verdicts(after)
    both = sorted(old.keys() & new.keys())
    lines = []
    for x, y, env, measure in both:
        before, after = old[(x, y, env, measure)], new[(x, y, env, measure)]
        if len({re.sub(r" at \d+ seeds$", "", verdict) for verdict in (before, after)}) > 1:
            lines.append(f"{x} vs {y}, {env}{f', {measure}' if measure else ''}: {before} -> {after}")
    return lines


if __name__ == "__main__":
    args = tyro.cli(Args)
    shown = subprocess.run(["git", "show", f"{args.before}:{REPORT}"], cwd=ROOT, capture_output=True, text=True)
    if shown.returncode != 0:
        sys.exit(f"error: no {REPORT} at {args.before}: {shown.stderr.strip()}")
    lines = moved(shown.stdout, (ROOT / REPORT).read_text())
    print("\n".join(lines) if lines else f"no verdict moved since {args.before}")
