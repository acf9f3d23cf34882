"""Summarises py-consul's junit xml and applies the pass-rate gate.

Usage: report.py <junit.xml> <not-applicable file> <minimum percent>

Prints "py-consul: P passed, F failed, S skipped of N (X%)", where X is
the pass rate of the applicable tests: those that ran (passed or failed)
and are not listed in the not-applicable file. Lists every failure, then
exits 1 if X is below the minimum.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET


def load_not_applicable(path: str) -> list[tuple[re.Pattern, str]]:
    """Lines `<test id pattern> <reason>`; the pattern matches test ids by prefix."""
    entries = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            pattern, _, reason = line.partition(" ")
            if not reason.strip():
                sys.exit(f"{path}: {pattern}: a reason is required")
            entries.append((re.compile(re.escape(pattern).replace(r"\*", ".*")), reason.strip()))
    return entries


def test_id(case: ET.Element) -> str:
    cls = case.get("classname", "")
    module, _, klass = cls.partition(".Test")
    path = module.replace(".", "/") + ".py"
    if klass:
        return f"{path}::Test{klass}::{case.get('name')}"
    return f"{path}::{case.get('name')}"


def main() -> int:
    xml_path, na_path, minimum = sys.argv[1], sys.argv[2], float(sys.argv[3])
    not_applicable = load_not_applicable(na_path)
    passed, failed, skipped, excluded = [], [], [], []
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        tid = test_id(case)
        problem = next((c for c in case if c.tag in ("failure", "error")), None)
        reason = next((r for p, r in not_applicable if p.match(tid)), None)
        if case.find("skipped") is not None:
            skipped.append(tid)
        elif reason is not None:
            excluded.append((tid, reason, problem is None))
        elif problem is not None:
            first = (problem.get("message") or problem.text or "").strip().splitlines()
            failed.append((tid, first[0][:200] if first else problem.tag))
        else:
            passed.append(tid)
    total = len(passed) + len(failed) + len(skipped) + len(excluded)
    applicable = len(passed) + len(failed)
    rate = 100.0 * len(passed) / applicable if applicable else 0.0
    for tid, message in failed:
        print(f"FAILED {tid}: {message}")
    for tid, reason, ok in excluded:
        print(f"NOT APPLICABLE ({'passed' if ok else 'failed'}) {tid}: {reason}")
    print(
        f"py-consul: {len(passed)} passed, {len(failed)} failed, {len(skipped)} skipped of {total} "
        f"({rate:.1f}%; {len(excluded)} not applicable)"
    )
    if rate < minimum:
        print(f"py-consul: pass rate {rate:.1f}% is below {minimum:g}%", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
