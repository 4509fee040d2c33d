#!/usr/bin/env python3
"""Sweeps `edgepool-sim bench` over agent and task counts and writes the figures.

    scripts/bench_sim.py                      # default sweep, prints the table
    scripts/bench_sim.py --write              # also BENCHMARKS.md section + docs/bench_sim.svg
    scripts/bench_sim.py --sizes 10x100,100x1000 --write

Each size runs the release binary once (`cargo build --release -p edgepool-simulator` first);
the JSON of every run is kept in target/bench-sim/. A run that loses a task (exit 1) is
reported as such, never dropped. The plot is a plain SVG written here (no plotting library:
matplotlib is not installed on the benchmark machine).
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN = "<!-- bench_sim.py begin -->"
END = "<!-- bench_sim.py end -->"
DEFAULT_SIZES = "10x100,100x1000,1000x10000,10000x100000"


def target_dir():
    return os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))


def build():
    subprocess.run(["cargo", "build", "--release", "-p", "edgepool-simulator"], cwd=ROOT,
                   check=True)
    return os.path.join(target_dir(), "release", "edgepool-sim")


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return {"cores": os.cpu_count(), "cpu": cpu, "kernel": platform.release(), "rustc": rustc}


def run_one(binary, agents, tasks, extra, outdir):
    path = os.path.join(outdir, f"bench-{agents}x{tasks}.json")
    cmd = [binary, "bench", "--agents", str(agents), "--tasks", str(tasks), "--quiet",
           "--json", path] + extra
    print("$", " ".join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True)
    print(p.stdout, p.stderr, sep="", flush=True)
    if not os.path.exists(path):
        return {"agents": agents, "tasks": tasks, "error": (p.stderr or p.stdout).strip()[-300:],
                "exit": p.returncode, "command": "edgepool-sim " + " ".join(cmd[1:])}
    with open(path) as f:
        r = json.load(f)
    r["exit"] = p.returncode
    shown = [a for i, a in enumerate(cmd[1:]) if a != "--json" and cmd[i] != "--json"]
    r["command"] = "edgepool-sim " + " ".join(shown)
    return r


def fmt_row(r):
    if "error" in r:
        return f"| {r['agents']} | {r['tasks']} | setup failed: {r['error']} | | | | | |"
    lost = r["options"]["tasks"] - r["completed"]
    top = sorted(r["cpu_by_thread"].items(), key=lambda kv: -kv[1])[:3]
    cpu = ", ".join(f"{k} {v:.1f}" for k, v in top)
    return (f"| {r['options']['agents']} | {r['options']['tasks']} | {r['connect_secs']:.1f} | "
            f"{r['run_secs']:.1f} | {r['tasks_per_sec']:.0f} | {lost} | "
            f"{r['assign_to_final_ms']['p50']:.0f} / {r['assign_to_final_ms']['p99']:.0f} | "
            f"{r['queue_ms']['p50']:.0f} / {r['queue_ms']['p99']:.0f} | "
            f"{r['cpu_secs']:.1f} ({cpu}) |")


def section(results, mach, date, plot_rel):
    lines = [BEGIN, "## Simulator: tasks/s and scheduler latency against agents", "",
             f"`scripts/bench_sim.py --write` on {date}; {mach['cores']} cores, {mach['cpu']}, "
             f"Linux {mach['kernel']}, {mach['rustc']}. Light agents (one async rumqttc client each, "
             "real secp256k1 keys and signed envelopes both ways, signed uploads to the store, "
             "10 ms simulated compute, 4 slots, trust 1) against the real pool, store and embedded "
             "rumqttd in one process. Latencies are the pool's own timestamps.", "",
             "| agents | tasks | connect s | run s | tasks/s | lost | assign→final ms p50 / p99 "
             "| submit→assign ms p50 / p99 | CPU s (top threads) |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [fmt_row(r) for r in results]
    lines += ["", "Commands: " + "; ".join(f"`{r['command']}`" for r in results), "",
              f"![tasks/s and latency against agents]({plot_rel})", "", END]
    return "\n".join(lines)


def svg_plot(results, path):
    ok = [r for r in results if "error" not in r]
    if not ok:
        return
    w, h, pad = 640, 360, 60
    xs = [r["options"]["agents"] for r in ok]
    import math
    lx = [math.log10(max(x, 1)) for x in xs]
    x0, x1 = min(lx), max(max(lx), min(lx) + 1)
    tps = [r["tasks_per_sec"] for r in ok]
    lat = [r["assign_to_final_ms"]["p50"] for r in ok]
    ymax_t, ymax_l = max(tps) * 1.15 or 1, max(lat) * 1.15 or 1

    def px(v):
        return pad + (math.log10(max(v, 1)) - x0) / (x1 - x0) * (w - 2 * pad)

    def py(v, m):
        return h - pad - v / m * (h - 2 * pad)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<line x1="{pad}" y1="{h-pad}" x2="{w-pad}" y2="{h-pad}" stroke="black"/>',
           f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h-pad}" stroke="#1f77b4"/>',
           f'<line x1="{w-pad}" y1="{pad}" x2="{w-pad}" y2="{h-pad}" stroke="#d62728"/>',
           f'<text x="{w/2}" y="{h-15}" text-anchor="middle">agents (log scale; tasks = 10 × agents)</text>',
           f'<text x="{pad}" y="{pad-20}" fill="#1f77b4">tasks/s (max {max(tps):.0f})</text>',
           f'<text x="{w-pad}" y="{pad-20}" fill="#d62728" text-anchor="end">'
           f'assign→final p50 ms (max {max(lat):.0f})</text>']
    for series, m, color in ((tps, ymax_t, "#1f77b4"), (lat, ymax_l, "#d62728")):
        pts = " ".join(f"{px(x):.1f},{py(v, m):.1f}" for x, v in zip(xs, series))
        out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, v in zip(xs, series):
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(v, m):.1f}" r="3" fill="{color}"/>')
            out.append(f'<text x="{px(x):.1f}" y="{py(v, m)-6:.1f}" text-anchor="middle" '
                       f'fill="{color}">{v:.0f}</text>')
    for x in xs:
        out.append(f'<text x="{px(x):.1f}" y="{h-pad+15}" text-anchor="middle">{x}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def write_section(text):
    path = os.path.join(ROOT, "BENCHMARKS.md")
    with open(path) as f:
        doc = f.read()
    if BEGIN in doc and END in doc:
        a, b = doc.index(BEGIN), doc.index(END) + len(END)
        doc = doc[:a] + text + doc[b:]
    else:
        doc = doc.rstrip("\n") + "\n\n" + text + "\n"
    with open(path, "w") as f:
        f.write(doc)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=DEFAULT_SIZES, help="AGENTSxTASKS,… (default %(default)s)")
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md and the plot")
    ap.add_argument("--binary", help="use this edgepool-sim instead of building")
    ap.add_argument("extra", nargs="*", help="more bench flags, after --")
    args = ap.parse_args()
    binary = args.binary or build()
    outdir = os.path.join(target_dir(), "bench-sim")
    os.makedirs(outdir, exist_ok=True)
    results = []
    for size in args.sizes.split(","):
        agents, tasks = (int(v) for v in size.lower().split("x"))
        results.append(run_one(binary, agents, tasks, args.extra, outdir))
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = section(results, machine(), date, "docs/bench_sim.svg")
    print(text)
    if args.write:
        svg_plot(results, os.path.join(ROOT, "docs", "bench_sim.svg"))
        write_section(text)
    return 0 if all(r.get("exit") == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
