#!/usr/bin/env bash
# Builds every app apps/<name>/<name>.c into apps/<name>/<name>.wasm (WASI
# preview 1), then writes apps/SHA256SUMS and apps/TOOLCHAIN.
#
#   apps/build.sh           build and update the committed .wasm files
#   apps/build.sh --check   build into a temp dir and compare with the
#                           committed .wasm files (exit 1 on any difference)
#
# Toolchain (Debian 12): apt-get install -y clang lld wasi-libc libclang-rt-dev-wasm32
# Debian puts wasi-libc in /usr/include/wasm32-wasi and /usr/lib/wasm32-wasi,
# where clang --target=wasm32-wasi already looks: no --sysroot needed. With a
# wasi-sdk style sysroot instead, set WASI_SYSROOT=/path/to/sysroot.
# CLANG overrides the compiler (default: clang).
#
# Output is deterministic: relative source paths, -ffile-prefix-map, no debug
# info and --strip-all (which also drops the "producers" section naming the
# compiler), so the same toolchain gives the same bytes in any folder.
set -euo pipefail

apps_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
clang_bin=${CLANG:-clang}

cflags=(
    --target=wasm32-wasi
    -O2
    -std=c11
    -Wall -Wextra -Werror
    -DNDEBUG
    -I include
    "-ffile-prefix-map=${apps_dir}=."
    "-Wl,--strip-all"
)
if [[ -n "${WASI_SYSROOT:-}" ]]; then
    cflags+=("--sysroot=${WASI_SYSROOT}")
fi

usage() {
    echo "usage: $0 [--check]" >&2
    exit 2
}

# Lists the app names: every folder <name> holding <name>.c, sorted.
list_apps() {
    local dir name
    for dir in "${apps_dir}"/*/; do
        name=$(basename "${dir}")
        if [[ -f "${dir}${name}.c" ]]; then
            echo "${name}"
        fi
    done | LC_ALL=C sort
}

# Describes the toolchain, one line per tool; the same text means the same bytes.
toolchain() {
    echo "clang: $("${clang_bin}" --version | head -n 1)"
    echo "wasm-ld: $(wasm-ld --version | head -n 1)"
    if command -v dpkg-query >/dev/null 2>&1 && dpkg-query -W -f='${Version}' wasi-libc >/dev/null 2>&1; then
        echo "wasi-libc: $(dpkg-query -W -f='${Version}' wasi-libc)"
    else
        echo "wasi-libc: ${WASI_SYSROOT:-unknown}"
    fi
    echo "flags: ${cflags[*]//${apps_dir}/<apps>}"
}

# build_all OUT_ROOT: compiles each app to OUT_ROOT/<name>/<name>.wasm.
build_all() {
    local out_root=$1 name
    while read -r name; do
        mkdir -p "${out_root}/${name}"
        (cd "${apps_dir}" && "${clang_bin}" "${cflags[@]}" -o "${out_root}/${name}/${name}.wasm" "${name}/${name}.c" -lm)
        echo "built ${name}/${name}.wasm ($(wc -c <"${out_root}/${name}/${name}.wasm") bytes)"
    done < <(list_apps)
}

# sums OUT_ROOT: sha256sum lines for every app's .wasm, relative to OUT_ROOT.
sums() {
    local out_root=$1 name
    while read -r name; do
        (cd "${out_root}" && sha256sum "${name}/${name}.wasm")
    done < <(list_apps)
}

check() {
    local status=0
    check_tmp=$(mktemp -d)
    trap 'rm -rf "${check_tmp}"' EXIT
    local tmp=${check_tmp}
    build_all "${tmp}" >/dev/null
    sums "${tmp}" >"${tmp}/SHA256SUMS"
    if ! diff -u "${apps_dir}/SHA256SUMS" "${tmp}/SHA256SUMS"; then
        echo "rebuilt .wasm files differ from apps/SHA256SUMS (see diff above)" >&2
        status=1
    fi
    if ! (cd "${apps_dir}" && sha256sum --quiet -c SHA256SUMS); then
        echo "committed .wasm files do not match apps/SHA256SUMS" >&2
        status=1
    fi
    if [[ ${status} -ne 0 ]]; then
        if ! toolchain | diff -u "${apps_dir}/TOOLCHAIN" - >&2; then
            echo "the toolchain differs from the one recorded in apps/TOOLCHAIN (diff above):" \
                "different bytes are expected; rebuild with apps/build.sh to update" >&2
        else
            echo "same toolchain as apps/TOOLCHAIN, yet different bytes: sources changed without a rebuild?" >&2
        fi
        exit 1
    fi
    echo "ok: $(wc -l <"${apps_dir}/SHA256SUMS") .wasm files match a fresh build"
}

[[ $# -le 1 ]] || usage
case "${1:-}" in
"") ;;
--check)
    check
    exit 0
    ;;
*) usage ;;
esac

build_all "${apps_dir}"
sums "${apps_dir}" >"${apps_dir}/SHA256SUMS"
toolchain >"${apps_dir}/TOOLCHAIN"
cat "${apps_dir}/SHA256SUMS"
