#!/usr/bin/env python3
"""Dataset decryption and checksum benchmark (a benchmark script, not a timed test).

Times the release `edgepool-agent dataset decrypt|checksum` on a 1 GiB dataset (IV ‖ AES-256-CBC, the
iExec format) against OpenSSL on the same machine, in the same run, on the same bytes:

- decrypt:  `edgepool-agent dataset decrypt` vs `openssl enc -d -aes-256-cbc` (OpenSSL reads the
            body without the 16-byte IV prefix, which it takes as `-iv`);
- sha256:   `edgepool-agent dataset checksum` vs `openssl dgst -sha256`;
- checked:  `edgepool-agent dataset decrypt --checksum` (one streaming pass that decrypts and hashes)
            vs the two OpenSSL commands one after the other.

Runs are interleaved round-robin so that load from other work on the machine falls on all alike;
the figure is the median wall time; the ratio is OpenSSL's time over ours (≥ 1 means faster than
OpenSSL). Peak RSS (ru_maxrss from wait4) of `dataset decrypt --checksum` is measured on two file
sizes to show that it does not grow with the file. Outputs are compared with the plaintext.

Files live in --dir (default /dev/shm when it has room, so the disk does not time itself).

Usage: scripts/bench_dataset.py [--size-mib 1024] [--runs 3] [--skip-build] [--dir D] [--write]
"""
import argparse, base64, datetime, hashlib, os, platform, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATIO_TARGET = 0.8
RSS_TARGET_MIB = 16
BEGIN, END = "<!-- bench_dataset.py begin -->", "<!-- bench_dataset.py end -->"


def target_dir():
    import json
    out = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["target_directory"]


def run(cmd):
    """Runs cmd under GNU time; returns (wall s, peak RSS KiB).

    The peak RSS comes from `/usr/bin/time -f %M`, not from this process's wait4: a child forked
    from Python counts Python's pages until it execs (about 20 MiB), which would hide the figure.
    """
    with tempfile.NamedTemporaryFile("r") as rss:
        t0 = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name] + cmd,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.decode(errors='replace')}")
        return wall, int(rss.read().split()[-1])


def write_random(path, size):
    chunk = 1 << 20
    with open(path, "wb") as f:
        for _ in range(size // chunk):
            f.write(os.urandom(chunk))
        f.write(os.urandom(size % chunk))


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def pick_dir(want_bytes):
    shm = "/dev/shm"
    if os.path.isdir(shm) and shutil.disk_usage(shm).free > want_bytes * 1.2:
        return shm
    return None


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
               platform.machine())
    ossl = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
    return cpu, os.cpu_count(), platform.release(), ossl


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--small-mib", type=int, default=64, help="second size for the RSS comparison")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--dir")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    if not os.path.exists("/usr/bin/time"):
        sys.exit("GNU time is needed for the peak RSS (apt-get install -y time)")
    if not shutil.which("openssl"):
        sys.exit("openssl is needed for the reference (apt-get install -y openssl)")
    if not args.skip_build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "edgepool-agent", "--bin",
                        "edgepool-agent"], cwd=ROOT, check=True)
    agent = os.path.join(target_dir(), "release", "edgepool-agent")
    size = args.size_mib << 20
    base = args.dir or pick_dir(size * 4)
    loadavg_start = open("/proc/loadavg").read().split()[:3]
    with tempfile.TemporaryDirectory(dir=base, prefix="edgepool-bench-dataset-") as d:
        p = lambda name: os.path.join(d, name)
        key = os.urandom(32)
        with open(p("key"), "w") as f:
            f.write(base64.b64encode(key).decode())
        print(f"writing {args.size_mib} MiB of random data in {d}", file=sys.stderr)
        write_random(p("plain"), size)
        plain_sum = sha256_file(p("plain"))
        run([agent, "dataset", "encrypt", "--key-file", p("key"), p("plain"), p("enc")])
        os.remove(p("plain"))
        checksum = "0x" + sha256_file(p("enc"))
        with open(p("enc"), "rb") as src, open(p("enc.body"), "wb") as dst:
            iv = src.read(16)
            shutil.copyfileobj(src, dst, 1 << 20)
        kx, ivx = key.hex(), iv.hex()
        # Small file for the RSS comparison.
        write_random(p("small.plain"), args.small_mib << 20)
        run([agent, "dataset", "encrypt", "--key-file", p("key"), p("small.plain"), p("small.enc")])
        os.remove(p("small.plain"))
        small_sum = "0x" + sha256_file(p("small.enc"))

        cases = {
            "agent_decrypt": [agent, "dataset", "decrypt", "--key-file", p("key"), p("enc"), p("out.agent")],
            "agent_decrypt_checked": [agent, "dataset", "decrypt", "--key-file", p("key"), "--checksum",
                                      checksum, p("enc"), p("out.checked")],
            "agent_checksum": [agent, "dataset", "checksum", p("enc")],
            "openssl_decrypt": ["openssl", "enc", "-d", "-aes-256-cbc", "-K", kx, "-iv", ivx, "-in",
                                p("enc.body"), "-out", p("out.openssl")],
            "openssl_sha256": ["openssl", "dgst", "-sha256", p("enc")],
            "agent_decrypt_checked_small": [agent, "dataset", "decrypt", "--key-file", p("key"),
                                            "--checksum", small_sum, p("small.enc"), p("out.small")],
        }
        wall = {k: [] for k in cases}
        rss = {k: [] for k in cases}
        for i in range(args.runs):
            for k, cmd in cases.items():
                out = cmd[-1]
                if os.path.basename(out).startswith("out.") and os.path.exists(out):
                    os.remove(out)
                w, r = run(cmd)
                wall[k].append(w)
                rss[k].append(r)
                print(f"run {i + 1}/{args.runs} {k}: {w:.3f} s, peak RSS {r / 1024:.1f} MiB", file=sys.stderr)
            for out in ("out.agent", "out.checked", "out.openssl"):
                if sha256_file(p(out)) != plain_sum:
                    sys.exit(f"{out} differs from the plaintext")
    med = {k: statistics.median(v) for k, v in wall.items()}
    peak = {k: max(v) / 1024 for k, v in rss.items()}
    mib = args.size_mib
    r_dec = med["openssl_decrypt"] / med["agent_decrypt"]
    r_sha = med["openssl_sha256"] / med["agent_checksum"]
    r_chk = (med["openssl_decrypt"] + med["openssl_sha256"]) / med["agent_decrypt_checked"]
    cpu, cores, kernel, ossl = machine()
    date = datetime.date.today().isoformat()
    verdict = lambda ok: "**met**" if ok else "**missed**"
    lines = [
        BEGIN,
        "## Dataset decryption and checksum against OpenSSL",
        "",
        f"Command: `scripts/bench_dataset.py --size-mib {mib} --runs {args.runs}{' --write' if args.write else ''}` "
        f"on {date}; {cores} cores, {cpu}, Linux {kernel}, {ossl}; files in {base or 'a temporary directory'}; "
        f"load average at start {' '.join(loadavg_start)}, at end {' '.join(open('/proc/loadavg').read().split()[:3])}. "
        f"A {mib} MiB random dataset in the iExec format (IV ‖ AES-256-CBC), the release agent binary, "
        f"median of {args.runs} interleaved runs; every output was compared with the plaintext.",
        "",
        "| figure | edgepool-agent | OpenSSL (same run) | ratio OpenSSL/ours | target |",
        "|---|---|---|---|---|",
        f"| decrypt {mib} MiB (`dataset decrypt` vs `openssl enc -d -aes-256-cbc`) | {med['agent_decrypt']:.3f} s "
        f"({mib / med['agent_decrypt']:.0f} MiB/s) | {med['openssl_decrypt']:.3f} s ({mib / med['openssl_decrypt']:.0f} MiB/s) "
        f"| {r_dec:.2f}× | ≥ {RATIO_TARGET}×: {verdict(r_dec >= RATIO_TARGET)} |",
        f"| sha256 {mib} MiB (`dataset checksum` vs `openssl dgst -sha256`) | {med['agent_checksum']:.3f} s "
        f"({mib / med['agent_checksum']:.0f} MiB/s) | {med['openssl_sha256']:.3f} s ({mib / med['openssl_sha256']:.0f} MiB/s) "
        f"| {r_sha:.2f}× | ≥ {RATIO_TARGET}×: {verdict(r_sha >= RATIO_TARGET)} |",
        f"| decrypt and check the checksum in one pass (`dataset decrypt --checksum` vs both commands) | "
        f"{med['agent_decrypt_checked']:.3f} s | {med['openssl_decrypt'] + med['openssl_sha256']:.3f} s | {r_chk:.2f}× | |",
        f"| peak RSS of `dataset decrypt --checksum`, {mib} MiB file | {peak['agent_decrypt_checked']:.1f} MiB | "
        f"(openssl enc -d: {peak['openssl_decrypt']:.1f} MiB) | | ≤ {RSS_TARGET_MIB} MiB: "
        f"{verdict(peak['agent_decrypt_checked'] <= RSS_TARGET_MIB)} |",
        f"| peak RSS of `dataset decrypt --checksum`, {args.small_mib} MiB file | "
        f"{peak['agent_decrypt_checked_small']:.1f} MiB | | | independent of the size: "
        f"{verdict(abs(peak['agent_decrypt_checked'] - peak['agent_decrypt_checked_small']) < 1.0)} |",
        "",
        "Both sides write the plaintext to a file in the same directory. OpenSSL's `enc` uses AES-NI and "
        "its assembly SHA-256; the agent uses RustCrypto `aes`+`cbc` (AES-NI, several blocks at once for "
        "decryption) and ring's SHA-256.",
        END,
    ]
    section = "\n".join(lines)
    print(section)
    if args.write:
        path = os.path.join(ROOT, "BENCHMARKS.md")
        text = open(path).read()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            text = head + section + tail
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
        open(path, "w").write(text)


if __name__ == "__main__":
    main()
