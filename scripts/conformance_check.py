#!/usr/bin/env python3
"""Compares a kosoku (Autobahn) report with the committed expectations.

A case counts as passed only when both its behaviour and its close behaviour are OK (strict).
Fails on any regression: a case whose behaviour or close behaviour is graded worse than
expected (OK > NON-STRICT, INFORMATIONAL > UNIMPLEMENTED > WRONG CODE, UNCLEAN > FAILED), so a
NON-STRICT or INFORMATIONAL case that turns FAILED fails the check as surely as an OK one. A
case expected `RACE` may go either way. Cases graded better than expected are reported as
improvements (rerun with --update to record them).

`--only FILE` compares only the cases listed in FILE (one per line): a re-run of some cases.
`--regressed FILE` writes the regressed cases there, one per line, for such a re-run.
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


# Lower is better; an unknown grade ranks as FAILED.
RANK = {
    "OK": 0,
    "NON-STRICT": 1,
    "INFORMATIONAL": 1,
    "UNIMPLEMENTED": 2,
    "WRONG CODE": 3,
    "UNCLEAN": 3,
    "FAILED": 4,
}


def ranks(outcome):
    """(behaviour, close behaviour) ranks of an outcome string."""
    if outcome == "OK":
        return (0, 0)
    behaviour, _, close = outcome.partition("/")
    return (RANK.get(behaviour, 4), RANK.get(close or behaviour, 4))


def worse(actual, expected):
    """Whether `actual` is graded worse than `expected` in either half."""
    if expected == "RACE":
        return False
    if actual is None:
        return True  # a case that did not run at all
    return any(a > e for a, e in zip(ranks(actual), ranks(expected)))


def better(actual, expected):
    if expected == "RACE":
        return False
    return not worse(actual, expected) and ranks(actual) != ranks(expected)


def option(args, name):
    """The value after `name` in `args`, or None."""
    return args[args.index(name) + 1] if name in args else None


def main():
    report, expected_path = sys.argv[1], sys.argv[2]
    rest = sys.argv[3:]
    update = "--update" in rest
    only_path, regressed_path = option(rest, "--only"), option(rest, "--regressed")
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
    if only_path:
        only = set(open(only_path).read().split())
        expected = {c: v for c, v in expected.items() if c in only}
    regressions = [c for c, v in expected.items() if worse(actual.get(c), v)]
    improvements = [c for c, v in actual.items() if c in expected and better(v, expected[c])]
    for c in sorted(regressions, key=case_key):
        print(f"REGRESSION {c}: expected {expected[c]}, got {actual.get(c, 'missing')}")
    for c in sorted(improvements, key=case_key):
        print(f"improved {c}: now {actual[c]} (was {expected[c]})")
    if regressed_path:
        with open(regressed_path, "w") as f:
            f.writelines(f"{c}\n" for c in sorted(regressions, key=case_key))
    if regressions:
        print(f"{len(regressions)} conformance regressions")
        return 1
    print(f"no regressions against {expected_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
