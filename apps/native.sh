#!/usr/bin/env bash
# Builds one app natively with gcc, to compare the sandbox with native speed.
#
#   apps/native.sh APP [OUTPUT]   (default OUTPUT: apps/APP/APP-native, git-ignored)
#
# Run the result like the wasm app, with real folders in the environment:
#   IEXEC_IN=/some/in IEXEC_OUT=/some/out apps/mandelbrot/mandelbrot-native 1200 1000
# -ffp-contract=off keeps gcc from fusing a*b+c into one FMA (aarch64, or
# x86-64 with -march=native), so native results stay byte-identical to wasm.
set -euo pipefail

apps_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ $# -lt 1 || $# -gt 2 || ! -f "${apps_dir}/${1}/${1}.c" ]]; then
    echo "usage: $0 APP [OUTPUT]   (APP: a folder of apps/ holding APP.c)" >&2
    exit 2
fi
app=$1
out=${2:-${apps_dir}/${app}/${app}-native}
gcc -O2 -std=c11 -ffp-contract=off -Wall -Wextra -Werror -DNDEBUG \
    -I "${apps_dir}/include" -o "${out}" "${apps_dir}/${app}/${app}.c" -lm
echo "${out}"
