#!/usr/bin/env python3
"""Compares a kosoku (Autobahn) report with the committed expectations.

A case counts as passed only when both its behaviour and its close behaviour are OK (strict).
Fails on any regression: a case expected to pass that does not. Cases that pass but were not
expected to are reported as improvements (rerun with --update to record them).
"""
import json
import sys


def case_key(case):
    return [int(p) for p in case.split(".")]


def outcomes(index_path):
    index = json.load(open(index_path))
    (cases,) = index.values()
    return {
        case: "OK"
        if r["behavior"] == "OK" and r["behaviorClose"] == "OK"
        else f'{r["behavior"]}/{r["behaviorClose"]}'
        for case, r in cases.items()
    }


def main():
    report, expected_path = sys.argv[1], sys.argv[2]
    update = "--update" in sys.argv[3:]
    actual = outcomes(report)
    passed = sum(1 for v in actual.values() if v == "OK")
    print(f"conformance: {passed} of {len(actual)} cases pass strictly")
    if update:
        ordered = {k: actual[k] for k in sorted(actual, key=case_key)}
        with open(expected_path, "w") as f:
            json.dump(ordered, f, indent=1)
            f.write("\n")
        print(f"wrote {expected_path}")
        return 0
    expected = json.load(open(expected_path))
    regressions = [c for c, v in expected.items() if v == "OK" and actual.get(c) != "OK"]
    improvements = [c for c, v in actual.items() if v == "OK" and expected.get(c) != "OK"]
    for c in sorted(regressions, key=case_key):
        print(f"REGRESSION {c}: expected OK, got {actual.get(c, 'missing')}")
    for c in sorted(improvements, key=case_key):
        print(f"improved {c}: now OK (was {expected.get(c, 'missing')})")
    if regressions:
        print(f"{len(regressions)} conformance regressions")
        return 1
    print(f"no regressions against {expected_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
