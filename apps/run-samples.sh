#!/usr/bin/env bash
# Runs every sample of every app in a WASI runtime and compares the results
# with the recorded ones.
#
#   apps/run-samples.sh [--update] [APP...]
#
# A sample is a folder apps/<app>/samples/<case>/ holding:
#   iexec_args   optional: the task's iexec_args, split like a POSIX shell does
#                (by xargs: quotes and backslashes, no expansion)
#   env          optional: NAME=VALUE lines (IEXEC_IN and IEXEC_OUT are added)
#   in/          optional: the contents of /iexec_in
#   expected/    the exact contents of /iexec_out after the run
#   exit_code    the app's expected exit code
# --update records expected/ and exit_code from this run instead of comparing.
#
# The runtime is wasmi's CLI (cargo install wasmi_cli; the binary is `wasmi`,
# override with WASMI=/path/to/wasmi). Its --dir takes a host folder and
# pre-opens it under the same name, so each case runs in a scratch folder
# holding iexec_in/ and iexec_out/: wasi-libc resolves the app's
# /iexec_in/... and /iexec_out/... against those relative pre-opens, so the
# app sees exactly the paths the agent gives it.
set -euo pipefail

apps_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
wasmi_bin=${WASMI:-$(command -v wasmi || echo "${HOME}/.cargo/bin/wasmi")}
update=0
if [[ "${1:-}" == "--update" ]]; then
    update=1
    shift
fi
if [[ $# -eq 0 ]]; then
    for dir in "${apps_dir}"/*/samples/; do
        set -- "$@" "$(basename "$(dirname "${dir}")")"
    done
fi

scratch=$(mktemp -d)
trap 'rm -rf "${scratch}"' EXIT
failures=0

# run_case APP CASE_DIR: runs one sample; returns non-zero when it does not match.
run_case() {
    local app=$1 case_dir=$2 work="${scratch}/work" code=0
    local -a args=() envs=()
    rm -rf "${work}"
    mkdir -p "${work}/iexec_in" "${work}/iexec_out"
    if [[ -d "${case_dir}/in" ]]; then
        cp -R "${case_dir}/in/." "${work}/iexec_in/"
    fi
    if [[ -f "${case_dir}/iexec_args" ]]; then
        mapfile -d '' args < <(xargs -r printf '%s\0' <"${case_dir}/iexec_args")
    fi
    envs=(--env IEXEC_IN=/iexec_in --env IEXEC_OUT=/iexec_out)
    if [[ -f "${case_dir}/env" ]]; then
        local line
        while IFS= read -r line; do
            [[ -n "${line}" ]] && envs+=(--env "${line}")
        done <"${case_dir}/env"
    fi
    (cd "${work}" && "${wasmi_bin}" --dir iexec_in --dir iexec_out "${envs[@]}" \
        "${apps_dir}/${app}/${app}.wasm" "${args[@]}") >"${scratch}/stdout" 2>"${scratch}/stderr" || code=$?

    if [[ ${update} -eq 1 ]]; then
        rm -rf "${case_dir}/expected"
        cp -R "${work}/iexec_out" "${case_dir}/expected"
        echo "${code}" >"${case_dir}/exit_code"
        echo "recorded ${app}/$(basename "${case_dir}"): exit ${code}, $(find "${case_dir}/expected" -type f | wc -l) files"
        return 0
    fi
    local expected_code
    expected_code=$(cat "${case_dir}/exit_code")
    if [[ "${code}" != "${expected_code}" ]]; then
        echo "FAIL ${app}/$(basename "${case_dir}"): exit code ${code}, expected ${expected_code}" >&2
        cat "${scratch}/stderr" >&2
        return 1
    fi
    if ! diff -r "${case_dir}/expected" "${work}/iexec_out" >&2; then
        echo "FAIL ${app}/$(basename "${case_dir}"): /iexec_out differs from expected/ (diff above)" >&2
        return 1
    fi
    echo "ok ${app}/$(basename "${case_dir}") (exit ${code})"
}

for app in "$@"; do
    for case_dir in "${apps_dir}/${app}"/samples/*/; do
        run_case "${app}" "${case_dir%/}" || failures=$((failures + 1))
    done
done
if [[ ${failures} -ne 0 ]]; then
    echo "${failures} sample(s) failed" >&2
    exit 1
fi
