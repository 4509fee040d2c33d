#!/usr/bin/env python3
"""Task pipeline and sandbox benchmarks (a benchmark script, not a timed test).

1. Per-task overhead on loopback: `agent/examples/bench_pipeline.rs` drives the release agent
   binary through one cold task, --tasks cached tasks and --fresh tasks with a new dataset each
   (apps/hello reading a 1 MiB dataset), from the assignment's publish to the contribution's
   receipt on the scheduler side, and subtracts the app's own run time measured in-process with
   `sandbox::Prepared` on the same inputs. References in the same run: one QoS 1 hop through the
   same broker, one 1 MiB GET from the same HTTP server.
2. Sandbox speed: `agent/examples/bench_sandbox.rs` (Prepared::compile + run, as the agent runs a
   task) against wasmi's CLI (same module, `--compilation-mode eager --fuel`) and a native
   `gcc -O2` build (apps/native.sh), on mandelbrot and sha256sum at work sizes that take about 1 s
   natively. Every run is a separate process timed here the same way (wall clock, and user+sys
   CPU time from wait4), the three kinds interleaved round-robin so that load from other work on
   the machine falls on all of them alike. The outputs of the three are compared byte for byte.

Usage: scripts/bench_pipeline.py [--tasks 100] [--fresh 20] [--throughput 300] [--runs 3] [--skip-build]
       [--only pipeline|sandbox] [--write]   (--write updates BENCHMARKS.md)

Builds with `cargo build --release` (fat LTO: a few minutes the first time) into
$CARGO_TARGET_DIR or target/.
"""
import argparse, json, os, platform, resource, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUEL = 1 << 50  # far above any workload here: never hit

# (name, wasm, args, uses the 1 MiB input file, the deterministic result file)
WORKLOADS = [
    ("mandelbrot", "apps/mandelbrot/mandelbrot.wasm", ["1200", "1000"], False, "result.json"),
    ("sha256sum", "apps/sha256sum/sha256sum.wasm", ["300"], True, "sha256sums.txt"),
]


def target_dir():
    out = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["target_directory"]


# The workspace's release profile builds everything at opt-level "s" except the packages it lists
# (wasmi is listed; its sibling crates wasmi_core, wasmi_ir and wasmi_collections are not). The
# variant builds bench_sandbox with the whole profile at opt-level 3 (as wasmi's CLI is built), in a
# target dir of its own, to show what the profile costs the sandbox.
def variant_dir(tdir):
    return os.path.join(tdir, "bench-o3")


def build(tdir, variant):
    # The agent binary as shipped (no dev-dependencies), then the examples (which need them).
    cargo = ["cargo", "build", "--release", "-q", "-p", "edgepool-agent"]
    subprocess.run(cargo + ["--bin", "edgepool-agent"], cwd=ROOT, check=True)
    subprocess.run(cargo + ["--example", "bench_pipeline", "--example", "bench_sandbox"],
                   cwd=ROOT, check=True)
    if variant:
        subprocess.run(cargo + ["--example", "bench_sandbox"], cwd=ROOT, check=True,
                       env=dict(os.environ, CARGO_TARGET_DIR=variant_dir(tdir),
                                CARGO_PROFILE_RELEASE_OPT_LEVEL="3"))


def timed(cmd, cwd=None, env=None):
    """Runs cmd; returns (wall s, user+sys CPU s, stdout)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate()  # reads the pipes; the child is reaped below by wait4
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}): {err.decode(errors='replace')}")
    return wall, ru.ru_utime + ru.ru_stime, out.decode()


class ChildCpu:
    """Per-child CPU time from the cumulative RUSAGE_CHILDREN counters."""

    def __init__(self):
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.last = ru.ru_utime + ru.ru_stime

    def run(self, cmd, cwd=None, env=None):
        wall, total, out = timed(cmd, cwd, env)
        cpu, self.last = total - self.last, total
        return wall, cpu, out


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
               platform.machine())
    mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    version = lambda cmd: subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
    return {
        "cpu": cpu, "cores": os.cpu_count(), "mem_gib": round(mem / 1048576),
        "kernel": platform.release(), "rustc": version(["rustc", "--version"]),
        "wasmi_cli": version(["wasmi", "--version"]) if shutil.which("wasmi") else None,
        "gcc": version(["gcc", "--version"]),
        "loadavg_start": open("/proc/loadavg").read().split()[:3],
    }


EATMYDATA = "/usr/lib/x86_64-linux-gnu/libeatmydata.so"  # apt-get install -y eatmydata

# (key, broker, app, share of --tasks/--fresh, extra agent environment, TEE tasks, the agent's
# slots; each run also times --throughput tasks with those slots kept busy): the first is
# the headline figure (the target is for a TEE task). The last is a diagnostic, not a
# configuration to ship: fsync made a no-op, to measure what the journal's durability costs.
PIPELINE_RUNS = [
    ("tee-read-mosquitto", "mosquitto", "read", 1.0, [], True, 1),
    ("read-mosquitto", "mosquitto", "read", 1.0, [], False, 1),
    ("hello-mosquitto", "mosquitto", "hello", 0.5, [], False, 1),
    ("read-rumqttd", "rumqttd", "read", 0.5, [], False, 1),
    # Tasks/s per agent with slots to spare: the trivial app, 4 tasks at a time.
    ("read-mosquitto-4slots", "mosquitto", "read", 0.3, [], False, 4),
    ("tee-read-mosquitto-4slots", "mosquitto", "read", 0.3, [], True, 4),
    ("read-mosquitto-nofsync", "mosquitto", "read", 0.5, [f"LD_PRELOAD={EATMYDATA}"], False, 1),
]


def cpu_idle(seconds=2.0):
    """Fraction of the machine's CPU time that was idle over the next `seconds`."""
    def sample():
        fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, total
    i0, t0 = sample()
    time.sleep(seconds)
    i1, t1 = sample()
    return (i1 - i0) / max(1, t1 - t0)


def wait_idle(limit_s, want=0.8):
    """Waits up to limit_s for a quiet machine (other builds skew every figure); returns the idle
    fraction seen last."""
    end = time.time() + limit_s
    idle = cpu_idle()
    while idle < want and time.time() < end:
        print(f"  machine busy (idle {idle:.0%}), waiting…", file=sys.stderr)
        time.sleep(10)
        idle = cpu_idle()
    return round(idle, 2)


def pipeline(tdir, args):
    exe = os.path.join(tdir, "release", "examples", "bench_pipeline")
    agent = os.path.join(tdir, "release", "edgepool-agent")
    results = {}
    for key, broker, app, share, env, tee, slots in PIPELINE_RUNS:
        if broker == "mosquitto" and not os.path.exists("/usr/sbin/mosquitto"):
            print(f"  {key}: skipped, mosquitto not installed (apt-get install -y mosquitto)", file=sys.stderr)
            continue
        if any(EATMYDATA in e for e in env) and not os.path.exists(EATMYDATA):
            print(f"  {key}: skipped, libeatmydata not installed (apt-get install -y eatmydata)", file=sys.stderr)
            continue
        idle = wait_idle(args.wait_idle)
        tasks, fresh = max(1, int(args.tasks * share)), max(1, int(args.fresh * share))
        print(f"  {key}: {tasks} cached + {fresh} new-dataset tasks (idle before: {idle:.0%})", file=sys.stderr)
        out = subprocess.run([exe, "--agent", agent, "--tasks", str(tasks), "--fresh", str(fresh),
                              "--broker", broker, "--app", app, "--slots", str(slots),
                              "--throughput", str(args.throughput)] + [f"--agent-env={e}" for e in env]
                             + (["--tee"] if tee else []),
                             cwd=ROOT, check=True, stdout=subprocess.PIPE).stdout.decode()
        results[key] = json.loads(out.strip().splitlines()[-1])
        results[key]["cpu_idle_before"] = idle
    return results


def sandbox(tdir, args):
    if not shutil.which("wasmi"):
        sys.exit("wasmi CLI not found: cargo install wasmi_cli --version 2.0.0")
    exe = os.path.join(tdir, "release", "examples", "bench_sandbox")
    variant = os.path.join(variant_dir(tdir), "release", "examples", "bench_sandbox")
    kinds = ["native", "cli", "sandbox"] + (["sandbox_o3"] if not args.no_variant and os.path.exists(variant) else [])
    work = tempfile.mkdtemp(prefix="edgepool-bench-sandbox-")
    results = {}
    try:
        os.makedirs(os.path.join(work, "iexec_in"))
        mib = os.path.join(work, "iexec_in", "mib.bin")
        with open(mib, "wb") as f:
            f.write(bytes((i * 7 + 3) % 256 for i in range(1 << 20)))
        for name, wasm, wargs, uses_input, result_file in WORKLOADS:
            native = os.path.join(work, f"{name}-native")
            subprocess.run([os.path.join(ROOT, "apps", "native.sh"), name, native], check=True,
                           stdout=subprocess.DEVNULL)
            outs = {k: os.path.join(work, f"out-{name}-{k}") for k in kinds}
            env_in = {"IEXEC_INPUT_FILES_NUMBER": "1", "IEXEC_INPUT_FILE_NAME_1": "mib.bin"} if uses_input else {}
            native_env = dict(os.environ, IEXEC_IN=os.path.join(work, "iexec_in"), IEXEC_OUT=outs["native"], **env_in)
            # wasmi's CLI pre-opens host folders under their own (relative) names: run it from a
            # folder holding iexec_in/ and iexec_out/ (see apps/README.md).
            cli_dir = os.path.join(work, f"cli-{name}")
            os.makedirs(os.path.join(cli_dir, "iexec_out"))
            os.symlink(os.path.join(work, "iexec_in"), os.path.join(cli_dir, "iexec_in"))
            cli = ["wasmi", "--compilation-mode", "eager", "--fuel", str(FUEL),
                   "--dir", "iexec_in", "--dir", "iexec_out",
                   "--env", "IEXEC_IN=/iexec_in", "--env", "IEXEC_OUT=/iexec_out"]
            for k, v in env_in.items():
                cli += ["--env", f"{k}={v}"]
            cli += [os.path.join(ROOT, wasm)] + wargs
            sbx = lambda binary, out: [binary, "--module", os.path.join(ROOT, wasm), "--args", " ".join(wargs),
                                       "--runs", "1", "--out", out] + (["--input", mib] if uses_input else [])
            runs = {k: [] for k in kinds}
            in_process_ms, fuel = [], None
            meter = ChildCpu()  # leaves out gcc's time above
            idle = wait_idle(args.wait_idle)
            for r in range(args.runs):
                os.makedirs(outs["native"], exist_ok=True)
                runs["native"].append(meter.run([native] + wargs, env=native_env)[:2])
                runs["cli"].append(meter.run(cli, cwd=cli_dir)[:2])
                wall, cpu, out = meter.run(sbx(exe, outs["sandbox"]))
                runs["sandbox"].append((wall, cpu))
                report = json.loads(out)
                in_process_ms.append(report["run_ms"][0])
                fuel = report["fuel_used"]
                if "sandbox_o3" in kinds:
                    runs["sandbox_o3"].append(meter.run(sbx(variant, outs["sandbox_o3"]))[:2])
                print(f"  {name} round {r + 1}: " + ", ".join(
                    f"{k} {v[-1][0]:.2f} s" for k, v in runs.items()), file=sys.stderr)
            outputs = {}
            for k in kinds:
                d = os.path.join(cli_dir, "iexec_out") if k == "cli" else outs[k]
                outputs[k] = open(os.path.join(d, result_file), "rb").read()
            identical = len(set(outputs.values())) == 1
            med = lambda k, i: statistics.median(x[i] for x in runs[k])
            results[name] = {
                "args": wargs, "uses_1mib_input": uses_input, "result_file": result_file,
                "outputs_identical": identical, "fuel_used": fuel, "runs": args.runs,
                "wall_s": {k: med(k, 0) for k in runs}, "cpu_s": {k: med(k, 1) for k in runs},
                "all_wall_s": {k: [round(x[0], 3) for x in v] for k, v in runs.items()},
                "cpu_idle_before": idle,
                "sandbox_in_process_run_s": statistics.median(in_process_ms) / 1000,
                "result": outputs["sandbox"].decode(errors="replace").strip()[:200],
            }
            if not identical:
                print(f"warning: {name} outputs differ: {outputs}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--fresh", type=int, default=20)
    ap.add_argument("--throughput", type=int, default=300,
                    help="cached tasks per run timed with the agent's slots kept busy (tasks/s per agent)")
    ap.add_argument("--runs", type=int, default=3, help="rounds of each sandbox workload")
    ap.add_argument("--only", choices=["pipeline", "sandbox"])
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--wait-idle", type=float, default=600,
                    help="wait up to this many seconds for a quiet machine before each part")
    ap.add_argument("--no-variant", action="store_true",
                    help="skip the sandbox built with the whole release profile at opt-level 3")
    ap.add_argument("--quick", action="store_true", help="small work sizes: a smoke test, figures not written")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    if args.quick:
        WORKLOADS[0] = WORKLOADS[0][:2] + (["300", "200"],) + WORKLOADS[0][3:]
        WORKLOADS[1] = WORKLOADS[1][:2] + (["3"],) + WORKLOADS[1][3:]
        args.tasks, args.fresh, args.runs = min(args.tasks, 10), min(args.fresh, 3), 1
        args.throughput = min(args.throughput, 20)
        args.write = False
    tdir = target_dir()
    if not args.skip_build:
        build(tdir, not args.no_variant)
    result = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "command": " ".join(["scripts/bench_pipeline.py"] + sys.argv[1:])}
    if args.only in (None, "pipeline"):
        print("pipeline benchmark…", file=sys.stderr)
        result["pipeline"] = pipeline(tdir, args)
    if args.only in (None, "sandbox"):
        print("sandbox benchmark…", file=sys.stderr)
        result["sandbox"] = sandbox(tdir, args)
    result["machine"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    print(json.dumps(result, indent=2))
    if args.write:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import bench_report
        bench_report.write(os.path.join(ROOT, "BENCHMARKS.md"), result)


if __name__ == "__main__":
    main()
