#!/usr/bin/env python3
"""Turns scripts/bench.sh's raw results into the BENCHMARKS.md section and the plot.

Usage: bench_report.py RAW.jsonl REPORT_DIR OUT.md|- PLOT.png|- WSBENCH
Machine description, run metadata and the exact commands come from the environment
(BENCH_MACHINE, BENCH_META, BENCH_COMMANDS), set by bench.sh.
"""
import json
import os
import statistics
import subprocess
import sys

raw, report_dir, out, plot, wsbench = sys.argv[1:6]
rows = [json.loads(l) for l in open(raw) if l.strip()]

TITLES = {
    "plain": "plain relay",
    "ours": "ours",
    "websocat": "websocat 1.14",
    "reference": "reference 0.13",
    "socat": "socat",
}
ORDER = ["plain", "ours", "websocat", "reference", "socat"]
kinds = [k for k in ORDER if any(r["kind"] == k for r in rows)]
loads = [r["load1"] for r in rows if "load1" in r]


def ok(r):
    res = r.get("result")
    return res is not None and res.get("errors", 1) == 0 and res.get("connected", 0) > 0


def med(kind, test, metric):
    vals = []
    for r in rows:
        if r["kind"] != kind or r["test"] != test:
            continue
        if test == "idle":
            # Valid when every connection was open and still echoed afterwards (the load
            # tool's own check); the `ss` count of established sockets is informative only.
            if ok(r) and r["result"].get("alive") == r["conns"]:
                vals.append(r["kib_per_conn"])
            continue
        if not ok(r):
            continue
        if metric == "cpu_s_per_gb":
            vals.append(r["cpu_s"] / (r["bytes"] / 1e9))
        else:
            v = r["result"].get(metric)
            if v is not None:
                vals.append(v)
    return statistics.median(vals) if vals else None


def fmt(v, digits=1):
    return "n/a" if v is None else f"{v:.{digits}f}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


# (id, title, test, metric, higher is better, digits)
MATRIX = [
    ("echo64k", "echo, 1 connection × 64 KiB messages, 4 in flight (MB/s)", "echo64k", "mb_per_s", True, 1),
    ("echo16k", "echo, 64 connections × 16 KiB messages, 2 in flight each (MB/s)", "echo16k", "mb_per_s", True, 1),
    ("echo8m", "echo, 1 connection × 8 MiB messages, 2 in flight (MB/s)", "echo8m", "mb_per_s", True, 1),
    ("p50", "ping-pong, 64 B, p50 round trip (µs)", "pingpong", "rtt_p50_us", False, 1),
    ("p99", "ping-pong, 64 B, p99 round trip (µs)", "pingpong", "rtt_p99_us", False, 1),
    ("churn", "session churn, 16 clients (sessions/s)", "churn", "msgs_per_s", True, 0),
    ("cpu", "CPU seconds per GB relayed client → target", "cpu", "cpu_s_per_gb", False, 2),
    ("idle", "resident memory (Pss) per idle connection (KiB)", "idle", None, False, 1),
]
V = {(k, m[0]): med(k, m[2], m[3]) for k in kinds for m in MATRIX}
idle_n = {r["kind"]: r["conns"] for r in rows if r["test"] == "idle"}

lines = []
w = lines.append
w("## Results")
w("")
w(os.environ.get("BENCH_META", ""))
w(f"Machine: {os.environ.get('BENCH_MACHINE', '?')}. Load averages sampled before each measurement: "
  f"min {min(loads):.2f}, median {statistics.median(loads):.2f}, max {max(loads):.2f} (all in the raw results)." if loads else "")
w("Client, targets and proxy share the machine's cores, so absolute figures are low; read the "
  "ratios, which are measured side by side (proxies alternate within each run).")
w("")
w("![benchmark plot](docs/bench.png)")
w("")
header = "| test | " + " | ".join(TITLES[k] for k in kinds) + " |"
w(header)
w("| --- |" + " ---: |" * len(kinds))
for mid, title, test, metric, higher, digits in MATRIX:
    cells = []
    for k in kinds:
        v = V[(k, mid)]
        if v is None:
            cells.append("–" if (k == "socat" and mid != "cpu") else "n/a")
            continue
        cell = fmt(v, digits)
        base = V.get(("plain", mid))
        if k != "plain" and mid not in ("idle", "p99") and base:
            cell += f" ({v / base:.2f}×)"
        if mid == "idle":
            cell += f" ({idle_n.get(k)} conns)"
        cells.append(cell)
    w(f"| {title} | " + " | ".join(cells) + " |")
w("")
w("Ratios in parentheses are to the plain relay in the same run (for latency and CPU, lower is better).")
w("")

# ---- the targets ----
def g(k, m):
    return V.get((k, m))


targets = []
r64 = ratio(g("ours", "echo64k"), g("plain", "echo64k"))
targets.append(("1 × 64 KiB echo ≥ 0.9× plain relay", fmt(r64, 2) + "×", r64 is not None and r64 >= 0.9))
r16 = ratio(g("ours", "echo16k"), g("plain", "echo16k"))
targets.append(("64 × 16 KiB echo ≥ 0.9× plain relay", fmt(r16, 2) + "×", r16 is not None and r16 >= 0.9))
d50 = None if g("ours", "p50") is None or g("plain", "p50") is None else g("ours", "p50") - g("plain", "p50")
targets.append(("64 B ping-pong p50 within 10 µs of plain relay",
                "n/a" if d50 is None else f"{d50:+.1f} µs", d50 is not None and d50 <= 10))
idle = g("ours", "idle")
targets.append((f"≤ 16 KiB RSS per idle connection ({idle_n.get('ours')} conns)", fmt(idle, 2) + " KiB",
                idle is not None and idle <= 16))
rc = ratio(g("ours", "churn"), g("websocat", "churn"))
targets.append(("session churn ≥ 1.2× websocat", fmt(rc, 2) + "×", rc is not None and rc >= 1.2))
r8 = ratio(g("ours", "echo8m"), g("plain", "echo8m"))
targets.append(("8 MiB messages at full throughput (≥ 0.9× plain relay)", fmt(r8, 2) + "×", r8 is not None and r8 >= 0.9))
cs = ratio(g("ours", "cpu"), g("socat", "cpu"))
targets.append(("CPU s per GB client → target ≤ socat's",
                f"{fmt(g('ours', 'cpu'), 2)} vs {fmt(g('socat', 'cpu'), 2)} ({fmt(cs, 2)}×)", cs is not None and cs <= 1.0))
w("### The issue's targets")
w("")
w("| target | ours | met |")
w("| --- | ---: | :---: |")
for t, v, met in targets:
    w(f"| {t} | {v} | {'yes' if met else '**no**'} |")
w("")
w("### Commands")
w("")
w("Ports are picked free at run time; targets are `wsbench echo-server|sink-server --listen 127.0.0.1:PORT`.")
w("")
w("```sh")
w(os.environ.get("BENCH_COMMANDS", ""))
w("```")
section = "\n".join(lines) + "\n"
open(os.path.join(report_dir, "section.md"), "w").write(section)
print(section)

# ---- plot data: panel, test, proxy, value ----
tsv = []
short = {"echo64k": "echo 1×64 KiB", "echo16k": "echo 64×16 KiB", "echo8m": "echo 1×8 MiB",
         "churn": "churn (sessions/s)", "p50": "ping-pong (1/p50)", "cpu": "CPU per GB (inverse)"}
panel1 = "relative to the plain relay, higher is better (1.0 = plain tokio relay)"
for mid in ["echo64k", "echo16k", "echo8m", "p50", "churn", "cpu"]:
    base = g("plain", mid)
    for k in kinds:
        v = g(k, mid)
        if v is None or not base:
            continue
        rel = base / v if mid in ("p50", "cpu") else v / base
        tsv.append(f"{panel1}\t{short[mid]}\t{TITLES[k]}\t{rel:.4f}")
for k in kinds:
    v = g(k, "idle")
    if v is not None and v > 0:
        tsv.append(f"resident memory per idle connection, KiB (log)\tidle connections\t{TITLES[k]}\t{v:.2f}")
tsv_path = os.path.join(report_dir, "plot.tsv")
open(tsv_path, "w").write("\n".join(tsv) + "\n")
if plot != "-" and tsv:
    os.makedirs(os.path.dirname(plot) or ".", exist_ok=True)
    subprocess.run([wsbench, "plot", "--input", tsv_path, "--out", plot,
                    "--title", "websockify (Rust) against its yardsticks"], check=True)
    print(f"== wrote {plot}", file=sys.stderr)

if out != "-":
    begin = "<!-- bench.sh:begin (generated by scripts/bench.sh; edits inside are overwritten) -->"
    end = "<!-- bench.sh:end -->"
    text = open(out).read() if os.path.exists(out) else \
        "# Benchmarks\n\nRun `scripts/bench.sh` from the repo root to refresh the section below.\n\n"
    if begin in text and end in text:
        pre = text[: text.index(begin)]
        post = text[text.index(end) + len(end):]
        text = pre + begin + "\n" + section + end + post
    else:
        text += begin + "\n" + section + end + "\n"
    open(out, "w").write(text)
    print(f"== wrote {out}", file=sys.stderr)
