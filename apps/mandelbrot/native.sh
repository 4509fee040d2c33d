#!/usr/bin/env bash
# Builds mandelbrot natively with gcc, to compare the sandbox with native speed.
#
#   apps/mandelbrot/native.sh [OUTPUT]   (default: apps/mandelbrot/mandelbrot-native)
#
# Run it like the wasm app: IEXEC_OUT=/some/dir OUTPUT SIZE MAX_ITER
# -ffp-contract=off keeps gcc from fusing a*b+c into one FMA (aarch64, or
# x86-64 with -march=native), so the native image and result.json stay
# byte-identical to the wasm ones.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-${here}/mandelbrot-native}
gcc -O2 -std=c11 -ffp-contract=off -Wall -Wextra -Werror -DNDEBUG \
    -I "${here}/../include" -o "${out}" "${here}/mandelbrot.c"
echo "${out}"
