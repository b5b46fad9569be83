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
    "ours-tls": "ours --cert",
    "websocat-tls": "websocat 1.14 wss-l",
    "haproxy-tls": "HAProxy (TLS) + ours",
    "reference-tls": "reference 0.13 --cert",
    "ours-tokens": "TokenFile, 10,000 lines",
    "ours-redis": "TokenRedis, 10,000 tokens",
    "ours-jwt": "JWTTokenApi, RS256",
    "ours-metrics": "--metrics-listen, scraped every second",
}
# The plot names a proxy the same over ws:// and wss://, so it keeps its colour.
PLOT_NAME = dict(TITLES, **{"ours-tls": "ours", "websocat-tls": "websocat 1.14",
                            "haproxy-tls": "HAProxy + ours", "reference-tls": "reference 0.13"})
WS = ["plain", "ours", "websocat", "reference", "socat"]
TLS = ["ours-tls", "websocat-tls", "haproxy-tls", "reference-tls"]
TLS_YARDSTICKS = TLS[1:]
GATES = ["ours-tokens", "ours-redis", "ours-jwt", "ours-metrics"]
present = {r["kind"] for r in rows}
ws_kinds = [k for k in WS if k in present]
tls_kinds = [k for k in TLS if k in present]
gate_kinds = [k for k in GATES if k in present]
loads = [r["load1"] for r in rows if "load1" in r]


def ok(r):
    res = r.get("result")
    return res is not None and res.get("errors", 1) == 0 and res.get("connected", 0) > 0


def measured(kind, test):
    return any(r["kind"] == kind and r["test"] == test for r in rows)


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


def times(r):
    return "n/a" if r is None else f"{r:.2f}×"


def conns(k):
    return f" ({idle_n[k]} conns)" if k in idle_n else ""


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


# (id, title, test, metric, higher is better, digits)
MATRIX = [
    ("echo64k", "echo, 1 connection × 64 KiB messages, 4 in flight (MB/s)", "echo64k", "mb_per_s", True, 1),
    ("echo16k", "echo, 64 connections × 16 KiB messages, 2 in flight each (MB/s)", "echo16k", "mb_per_s", True, 1),
    ("echo8m", "echo, 1 connection × 8 MiB messages, 2 in flight (MB/s)", "echo8m", "mb_per_s", True, 1),
    ("p50", "ping-pong, 64 B, p50 round trip (µs)", "pingpong", "rtt_p50_us", False, 1),
    ("p99", "ping-pong, 64 B, p99 round trip (µs)", "pingpong", "rtt_p99_us", False, 1),
    ("lp50", "ping-pong beside 63 connections streaming 64 KiB echoes, p50 (µs)", "loaded", "rtt_p50_us", False, 1),
    ("lp99", "ping-pong beside 63 connections streaming 64 KiB echoes, p99 (µs)", "loaded", "rtt_p99_us", False, 1),
    ("lbulk", "… the 63 streaming connections' echo throughput (MB/s)", "loaded", "mb_per_s", True, 1),
    ("churn", "session churn, 16 clients (sessions/s)", "churn", "msgs_per_s", True, 0),
    ("resume", "session churn, 16 clients, TLS sessions resumed (sessions/s)", "resume", "msgs_per_s", True, 0),
    ("cpu", "CPU seconds per GB relayed client → target", "cpu", "cpu_s_per_gb", False, 2),
    ("idle", "resident memory (Pss) per idle connection (KiB)", "idle", None, False, 1),
]
BY_ID = {m[0]: m for m in MATRIX}
all_kinds = ws_kinds + tls_kinds + gate_kinds
V = {(k, m[0]): med(k, m[2], m[3]) for k in all_kinds for m in MATRIX}
idle_n = {r["kind"]: r["conns"] for r in rows if r["test"] == "idle"}


def g(k, m):
    return V.get((k, m))


def cell(k, mid, base=None, base_name="", with_idle_n=True):
    """The value, '–' where the proxy was not measured on it, 'n/a' where it failed."""
    _, _, test, _, higher, digits = BY_ID[mid]
    v = g(k, mid)
    if v is None:
        return "n/a" if measured(k, test) else "–"
    out = fmt(v, digits)
    if base:
        out += f" ({v / base:.2f}×{base_name})"
    if mid == "idle" and with_idle_n:
        out += f" ({idle_n.get(k)} conns)"
    return out


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
if ws_kinds:
    w("### ws://")
    w("")
    w("| test | " + " | ".join(TITLES[k] for k in ws_kinds) + " |")
    w("| --- |" + " ---: |" * len(ws_kinds))
    for mid, title, test, metric, higher, digits in MATRIX:
        if not any(measured(k, test) for k in ws_kinds):
            continue
        cells = []
        for k in ws_kinds:
            base = g("plain", mid) if k != "plain" and mid not in ("idle", "p99", "lp99", "lbulk") else None
            cells.append(cell(k, mid, base))
        w(f"| {title} | " + " | ".join(cells) + " |")
    w("")
    w("Ratios in parentheses are to the plain relay in the same run (for latency and CPU, lower is better).")
    w("")

TLS_ROWS = ["echo64k", "echo16k", "churn", "resume", "cpu", "idle"]


def best_yardstick(mid):
    """(kind, value) of the best wss:// yardstick on this row, or (None, None)."""
    higher = BY_ID[mid][4]
    vals = [(k, g(k, mid)) for k in TLS_YARDSTICKS if g(k, mid) is not None]
    if not vals:
        return None, None
    return (max if higher else min)(vals, key=lambda kv: kv[1])


if tls_kinds:
    cols = (["ours"] if "ours" in ws_kinds else []) + tls_kinds
    w("### wss://")
    w("")
    w("The same certificate (self-signed P-256) for every proxy; the client accepts it, checks the "
      "handshake signatures, offers ALPN http/1.1 and, on the resumed row, keeps one session "
      "store for all its connections (as one browser would). HAProxy terminates TLS in TCP "
      "mode in front of our ws:// (both processes counted for CPU and memory).")
    w("")
    w("| test | " + " | ".join(TITLES[k] + (" (ws://)" if k == "ours" else "") for k in cols) + " |")
    w("| --- |" + " ---: |" * len(cols))
    for mid in TLS_ROWS:
        title = BY_ID[mid][1]
        if mid == "churn":
            title = "session churn, 16 clients, full TLS handshakes (sessions/s)"
        cells = []
        for k in cols:
            if k == "ours-tls" and mid not in ("idle",):
                bk, bv = best_yardstick(mid)
                if mid == "cpu":
                    cells.append(cell(k, mid, g("ours", mid), " ours ws://"))
                else:
                    cells.append(cell(k, mid, bv, f" {TITLES[bk]}" if bk else ""))
            else:
                cells.append(cell(k, mid))
        w(f"| {title} | " + " | ".join(cells) + " |")
    w("")
    w("Ratios in parentheses: ours to the best yardstick on that row (CPU: to ours over ws://).")
    w("")

if gate_kinds:
    w("### Gates: session churn with each of our gates")
    w("")
    w("16 clients looping connect, upgrade, one 64 B echo, close, through ours without a gate and "
      "with each gate, interleaved in the same run (token `desk-5000` of 10,000).")
    w("")
    w("| ours | sessions/s | vs without (same run) |")
    w("| --- | ---: | ---: |")
    w(f"| without a gate | {cell('ours', 'churn')} | 1.00× |" if "ours" in ws_kinds else "| without a gate | – | |")
    for k in gate_kinds:
        r = ratio(g(k, "churn"), g("ours", "churn"))
        w(f"| {TITLES[k]} | {cell(k, 'churn')} | {times(r)} |")
    counted = [r.get("sessions") for r in rows if r["test"] == "metrics-counted"]
    if counted:
        w("")
        w(f"`websockify_sessions_total` after the runs: {counted[0]} (the metrics were on).")
    w("")

# ---- the issues' targets: (target, ours, met: True/False/None = not measured) ----
targets = []


def target(name, value, met):
    targets.append((name, value, met))


def at_least(name, r, limit):
    target(name, times(r), None if r is None else r >= limit)


at_least("1 × 64 KiB echo ≥ 0.9× plain relay", ratio(g("ours", "echo64k"), g("plain", "echo64k")), 0.9)
at_least("64 × 16 KiB echo ≥ 0.9× plain relay", ratio(g("ours", "echo16k"), g("plain", "echo16k")), 0.9)
at_least("8 MiB messages ≥ 0.95× plain relay", ratio(g("ours", "echo8m"), g("plain", "echo8m")), 0.95)
d50 = None if g("ours", "p50") is None or g("plain", "p50") is None else g("ours", "p50") - g("plain", "p50")
target("64 B ping-pong p50 within 10 µs of plain relay", "n/a" if d50 is None else f"{d50:+.1f} µs",
       None if d50 is None else d50 <= 10)
lr = ratio(g("ours", "lp99"), g("ours", "p99"))
others = "; ".join(f"{TITLES[k]} {times(ratio(g(k, 'lp99'), g(k, 'p99')))}"
                   for k in ("plain", "websocat") if measured(k, "loaded"))
target("ping-pong p99 beside 63 streaming connections ≤ 2× its p99 on an idle machine",
       f"{fmt(g('ours', 'lp99'))} vs {fmt(g('ours', 'p99'))} µs ({times(lr)})" + (f"; {others}" if others else ""),
       None if lr is None else lr <= 2.0)
at_least("session churn ≥ 0.9× plain relay", ratio(g("ours", "churn"), g("plain", "churn")), 0.9)
at_least("session churn ≥ 1.2× websocat", ratio(g("ours", "churn"), g("websocat", "churn")), 1.2)
idle = g("ours", "idle")
target(f"≤ 16 KiB per idle ws:// connection{conns('ours')}", fmt(idle, 2) + " KiB",
       None if idle is None else idle <= 16)
cs = ratio(g("ours", "cpu"), g("socat", "cpu"))
target("CPU s per GB client → target ≤ socat's",
       f"{fmt(g('ours', 'cpu'), 2)} vs {fmt(g('socat', 'cpu'), 2)} ({times(cs)})", None if cs is None else cs <= 1.0)
for mid, name in (("echo64k", "wss:// 1 × 64 KiB echo"), ("echo16k", "wss:// 64 × 16 KiB echo"),
                  ("churn", "wss:// session churn, full handshakes"), ("resume", "wss:// session churn, resumed")):
    bk, bv = best_yardstick(mid)
    r = ratio(g("ours-tls", mid), bv)
    target(f"{name} ≥ 1.3× the best yardstick" + (f" ({TITLES[bk]})" if bk else ""), times(r),
           None if r is None else r >= 1.3)
ct = ratio(g("ours-tls", "cpu"), g("ours", "cpu"))
target("wss:// CPU s per GB ≤ 1.5× ours over ws://",
       f"{fmt(g('ours-tls', 'cpu'), 2)} vs {fmt(g('ours', 'cpu'), 2)} ({times(ct)})", None if ct is None else ct <= 1.5)
it = g("ours-tls", "idle")
target(f"≤ 12 KiB per idle wss:// connection{conns('ours-tls')}", fmt(it, 2) + " KiB",
       None if it is None else it <= 12)
for k, limit in (("ours-tokens", 0.95), ("ours-redis", 0.8), ("ours-jwt", 0.8), ("ours-metrics", 0.97)):
    at_least(f"churn with {TITLES[k]} ≥ {limit}× without", ratio(g(k, "churn"), g("ours", "churn")), limit)
w("### The issues' targets")
w("")
w("| target | ours | met |")
w("| --- | ---: | :---: |")
for t, v, met in targets:
    w(f"| {t} | {v} | {'–' if met is None else 'yes' if met else '**no**'} |")
w("")
w("– : not measured in this run.")
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
         "churn": "churn", "resume": "churn, resumed", "p50": "ping-pong (1/p50)",
         "cpu": "CPU per GB (inverse)"}
panel = "ws://, relative to the plain relay, higher is better (1.0 = plain tokio relay)"
for mid in ["echo64k", "echo16k", "echo8m", "p50", "churn", "cpu"]:
    base = g("plain", mid)
    for k in ws_kinds:
        v = g(k, mid)
        if v is None or not base:
            continue
        rel = base / v if mid in ("p50", "cpu") else v / base
        tsv.append(f"{panel}\t{short[mid]}\t{PLOT_NAME[k]}\t{rel:.4f}")
panel = "wss://, relative to the best yardstick, higher is better (1.0 = best of the others)"
for mid in ["echo64k", "echo16k", "churn", "resume", "cpu"]:
    _, base = best_yardstick(mid)
    for k in tls_kinds:
        v = g(k, mid)
        if v is None or not base:
            continue
        rel = base / v if mid == "cpu" else v / base
        tsv.append(f"{panel}\t{short[mid]}\t{PLOT_NAME[k]}\t{rel:.4f}")
panel = "64 B ping-pong p99 round trip, µs, lower is better (log)"
for mid, name in (("p99", "idle machine"), ("lp99", "beside 63 connections streaming 64 KiB")):
    for k in ("plain", "ours", "websocat"):
        v = g(k, mid)
        if v is not None and v > 0 and measured(k, "loaded"):
            tsv.append(f"{panel}\t{name}\t{PLOT_NAME[k]}\t{v:.2f}")
panel = "session churn with a gate, relative to ours without, higher is better (1.0 = no gate)"
gate_short = {"ours-tokens": "TokenFile", "ours-redis": "TokenRedis", "ours-jwt": "JWT RS256",
              "ours-metrics": "metrics, scraped"}
for k in gate_kinds:
    r = ratio(g(k, "churn"), g("ours", "churn"))
    if r is not None:
        tsv.append(f"{panel}\t{gate_short[k]}\t{PLOT_NAME['ours']}\t{r:.4f}")
panel = "resident memory per idle connection, KiB (log)"
for name, group in (("ws://", ws_kinds), ("wss://", tls_kinds)):
    for k in group:
        v = g(k, "idle")
        if v is not None and v > 0:
            tsv.append(f"{panel}\t{name}\t{PLOT_NAME[k]}\t{v:.2f}")
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
