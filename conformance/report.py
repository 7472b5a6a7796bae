#!/usr/bin/env python3
"""Markdown report of a critest JUnit file against podvisor.

  conformance/report.py JUNIT.xml > report.md

Every spec gets its state and, unless it passed, a reason: for specs listed
in conformance/skip-podvisor.txt or conformance/failures-podvisor.txt (both
"<spec text> | <reason>", the text matched as a substring, first match
wins) the reason written there; otherwise critest's own message.
"""
import os
import re
import sys
import xml.etree.ElementTree as ET

here = os.path.dirname(os.path.abspath(__file__))


def rules(name):
    out = []
    with open(os.path.join(here, name)) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or " | " not in line:
                continue
            spec, reason = line.split(" | ", 1)
            out.append((spec.strip(), reason.strip()))
    return out


def first_line(s):
    for line in (s or "").splitlines():
        line = line.strip()
        if line:
            return line[:200]
    return ""


def main():
    skips, failures = rules("skip-podvisor.txt"), rules("failures-podvisor.txt")
    rows = []
    for tc in ET.parse(sys.argv[1]).getroot().iter("testcase"):
        name = tc.get("name", "")
        if re.match(r"^\[(Synchronized)?(Before|After)Suite\]", name):
            continue
        name = re.sub(r"^\[It\] ", "", name)
        status = tc.get("status", "")
        reason = ""
        if status == "skipped":
            skip = tc.find("skipped")
            msg = first_line(skip.get("message") if skip is not None else "")
            msg = re.sub(r"^skipped - ", "", msg)
            if msg in ("", "skipped"):
                msg = "not selected" + (" (benchmark; critest runs these only with -benchmark)" if "benchmark" in name else "")
            reason = next((r for s, r in skips if s in name), None)
            reason = ("skip list: " + reason) if reason else ("critest: " + msg)
        elif status != "passed":
            reason = next((r for s, r in failures if s in name), None)
            if not reason:
                f = tc.find("failure")
                if f is None:
                    f = tc.find("error")
                reason = "critest: " + first_line(f.get("message") if f is not None else "")
        state = {"passed": "pass", "skipped": "skip"}.get(status, "fail" if status == "failed" else status)
        rows.append((state, name, reason))
    rows.sort(key=lambda r: r[1])
    count = {}
    for r in rows:
        count[r[0]] = count.get(r[0], 0) + 1
    print("| pass | fail | skip | total |")
    print("|---|---|---|---|")
    other = sum(v for k, v in count.items() if k not in ("pass", "fail", "skip"))
    print(f"| {count.get('pass', 0)} | {count.get('fail', 0) + other} | {count.get('skip', 0)} | {len(rows)} |")
    print()
    print("| spec | result | reason |")
    print("|---|---|---|")
    for state, name, reason in rows:
        cell = lambda s: s.replace("|", "\\|")
        print(f"| {cell(name)} | {state} | {cell(reason)} |")


if __name__ == "__main__":
    main()
