#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ for a set time each, merges what they found into the
# committed corpus and keeps any crash as a reproducer.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60; no TARGET means every target (fuzz/fuzz_targets/*.rs).
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
#
# Per target: libFuzzer runs with -rss_limit_mb (RSS_LIMIT_MB, default 2048), -malloc_limit_mb
# (same) and a -max_len suited to its input; new inputs go to a scratch folder, then
# `-merge=1` adds those that reach new edges to fuzz/corpus/<target>/, then `cargo fuzz cmin`
# minimises the whole folder (both by edges only, -use_counters=0, to keep the committed corpus
# small; CMIN=0 skips the minimisation). A crash, leak, timeout or out-of-memory input is
# copied to fuzz/artifacts/<target>/ and its reproduce commands are printed. The script exits
# non-zero when any target crashed.
#
# Environment: CARGO_TARGET_DIR (default target/fuzz, kept apart from the stable builds),
# RSS_LIMIT_MB, CMIN (default 1), TIMEOUT_S (per input, default 10).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

seconds="${1:-60}"
shift || true
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    targets=()
    for f in fuzz/fuzz_targets/*.rs; do
        targets+=("$(basename "$f" .rs)")
    done
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/fuzz}"
rss="${RSS_LIMIT_MB:-2048}"
timeout_s="${TIMEOUT_S:-10}"

max_len() {
    case "$1" in
        dcap_verify|cert_chain) echo 32768 ;;   # a quote (5 KiB) and its collateral (16 KiB)
        envelope) echo 65536 ;;                  # MAX_ENVELOPE_BYTES is 256 KiB; bodies are small
        result_archive) echo 65536 ;;
        snp_verify) echo 16384 ;;                # a report (1184 B) and its certificates
        *) echo 16384 ;;
    esac
}

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

echo "building the fuzz targets (nightly, release with debug assertions)"
(cd fuzz && cargo +nightly fuzz build -O)

summary="$scratch/summary"
printf '%-16s %8s %12s %8s %10s %8s\n' target seconds executions entries corpus_kb crashes >"$summary"
failed=0
for t in "${targets[@]}"; do
    corpus="fuzz/corpus/$t"
    new="$scratch/new/$t"
    arts="$scratch/artifacts/$t"
    mkdir -p "$corpus" "$new" "$arts"
    log="$scratch/$t.log"
    echo "== $t: ${seconds}s, max_len $(max_len "$t"), rss limit ${rss} MB"
    status=0
    (cd fuzz && cargo +nightly fuzz run -O "$t" "$new" "$root/$corpus" -- \
        -max_total_time="$seconds" -rss_limit_mb="$rss" -malloc_limit_mb="$rss" \
        -timeout="$timeout_s" -max_len="$(max_len "$t")" -print_final_stats=1 \
        -artifact_prefix="$arts/") >"$log" 2>&1 || status=$?
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)"
    # Merge: keep only the new inputs that add coverage to the committed corpus.
    if [[ -n "$(ls -A "$new")" ]]; then
        (cd fuzz && cargo +nightly fuzz run -O "$t" "$root/$corpus" "$new" -- \
            -merge=1 -use_counters=0 -rss_limit_mb="$rss" -max_len="$(max_len "$t")" \
            -timeout="$timeout_s") >>"$log" 2>&1 || true
    fi
    if [[ "${CMIN:-1}" == 1 ]]; then
        (cd fuzz && cargo +nightly fuzz cmin -O "$t" "$root/$corpus" -- \
            -use_counters=0 -rss_limit_mb="$rss" -max_len="$(max_len "$t")") >>"$log" 2>&1 || true
    fi
    crashes=0
    for a in "$arts"/*; do
        [[ -e "$a" ]] || continue
        mkdir -p "fuzz/artifacts/$t"
        cp "$a" "fuzz/artifacts/$t/"
        crashes=$((crashes + 1))
        echo "!! $t: $(basename "$a")"
        echo "   reproduce: (cd fuzz && cargo +nightly fuzz run $t ../fuzz/artifacts/$t/$(basename "$a"))"
        echo "   stable:    cargo test -p edgepool-tests --test fuzz_corpus"
    done
    if [[ $status -ne 0 && $crashes -eq 0 ]]; then
        echo "!! $t: libFuzzer exited with $status and left no artifact; log follows"
        tail -40 "$log"
        crashes=1
    fi
    if [[ $crashes -gt 0 ]]; then
        failed=1
        grep -A25 -m1 -E '^==[0-9]+==|panicked at' "$log" || true
    fi
    entries="$(find "$corpus" -type f | wc -l)"
    kb="$(du -sk --apparent-size "$corpus" | cut -f1)"
    printf '%-16s %8s %12s %8s %10s %8s\n' "$t" "$seconds" "${execs:-?}" "$entries" "$kb" "$crashes" >>"$summary"
    cp "$log" "${FUZZ_LOG_DIR:-$scratch}/$t.log" 2>/dev/null || true
done

echo
cat "$summary"
exit "$failed"
