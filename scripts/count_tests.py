#!/usr/bin/env python3
"""Sums Catch2 test cases over every test binary in meson's testlog.json and
prints "N passed, M failed". A binary that crashed or timed out without a Catch2
summary counts as one failed test. Exits 1 if anything failed or nothing ran."""
import json
import re
import sys

passed = failed = 0
with open(sys.argv[1]) as log:
    for line in log:
        entry = json.loads(line)
        out = entry.get("stdout", "") or ""
        m = re.search(r"All tests passed \(\d+ assertions? in (\d+) test cases?\)", out)
        if m and entry.get("result") == "OK":
            passed += int(m.group(1))
            continue
        m = re.search(r"test cases:\s+(\d+)\s+\|\s+(\d+) passed\s+\|\s+(\d+) failed", out)
        if m:
            passed += int(m.group(2))
            failed += int(m.group(3))
            if int(m.group(3)) == 0 and entry.get("result") != "OK":
                failed += 1
            continue
        if entry.get("result") == "OK":
            passed += 1
        elif entry.get("result") != "SKIP":
            failed += 1
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed or not passed else 0)
