/*
 * mandelbrot - renders the Mandelbrot set; the sandbox speed benchmark.
 *
 * Usage: mandelbrot [SIZE [MAX_ITER [pgm]]]
 *
 * Computes a SIZE x SIZE escape-time image of the square [-2, 0.5] x
 * [-1.25, 1.25] with at most MAX_ITER iterations per pixel (defaults 256 and
 * 256; SIZE 1..16384, MAX_ITER 1..1000000). The work grows with
 * SIZE^2 * MAX_ITER: points inside the set run all MAX_ITER iterations.
 *
 * Writes IEXEC_OUT/result.json:
 *   {"size": N, "max_iter": N, "inside": N, "iterations": N, "crc32": "xxxxxxxx"}
 * where inside counts the pixels that never escaped, iterations is the total
 * over all pixels and crc32 is the CRC-32 of the 8-bit image (row by row).
 * With the third argument "pgm" it also writes IEXEC_OUT/mandelbrot.pgm (a
 * binary P5 image). computed.json names result.json as the deterministic
 * output.
 *
 * Only +, -, * and compares on IEEE doubles: no libm, no fused multiply-add
 * (neither wasm32 nor baseline x86-64 has one), so a native gcc -O2 build
 * and the wasm build produce the same bytes.
 *
 * Exit codes: 0 done; 1 IEXEC_OUT not writable; 2 bad arguments.
 */
#include "iexec_app.h"

#define X_MIN (-2.0)
#define X_MAX 0.5
#define Y_MIN (-1.25)
#define Y_MAX 1.25

static unsigned long parse_arg(const char *text, const char *what, unsigned long max) {
    unsigned long v = 0;
    if (iexec_parse_uint(text, max, &v) != 0 || v == 0) {
        iexec_fail(IEXEC_EXIT_USAGE, "%s: expected a whole number from 1 to %lu, found \"%s\"", what, max, text);
    }
    return v;
}

/* Iterations before z = z^2 + c leaves the radius-2 disc, or max_iter. */
static unsigned escape_time(double cx, double cy, unsigned max_iter) {
    double x = 0.0, y = 0.0, x2 = 0.0, y2 = 0.0;
    unsigned i = 0;
    while (i < max_iter && x2 + y2 <= 4.0) {
        y = 2.0 * x * y + cy;
        x = x2 - y2 + cx;
        x2 = x * x;
        y2 = y * y;
        i++;
    }
    return i;
}

int main(int argc, char **argv) {
    if (argc > 4) {
        iexec_fail(IEXEC_EXIT_USAGE, "expected at most 3 arguments (SIZE MAX_ITER [pgm]), found %d", argc - 1);
    }
    unsigned size = argc > 1 ? (unsigned)parse_arg(argv[1], "SIZE", 16384) : 256;
    unsigned max_iter = argc > 2 ? (unsigned)parse_arg(argv[2], "MAX_ITER", 1000000) : 256;
    int write_pgm = 0;
    if (argc > 3) {
        if (strcmp(argv[3], "pgm") != 0) {
            iexec_fail(IEXEC_EXIT_USAGE, "third argument: expected \"pgm\", found \"%s\"", argv[3]);
        }
        write_pgm = 1;
    }

    unsigned char *row = malloc(size);
    if (row == NULL) {
        iexec_fail(IEXEC_EXIT_FAILED, "out of memory");
    }
    FILE *pgm = NULL;
    char path[IEXEC_PATH_MAX];
    if (write_pgm) {
        if (iexec_join(path, sizeof path, iexec_out_dir(), "mandelbrot.pgm") != 0) {
            iexec_fail(IEXEC_EXIT_FAILED, "IEXEC_OUT is too long");
        }
        pgm = fopen(path, "wb");
        if (pgm == NULL) {
            iexec_fail(IEXEC_EXIT_FAILED, "cannot create %s: %s", path, strerror(errno));
        }
        fprintf(pgm, "P5\n%u %u\n255\n", size, size);
    }

    unsigned long long inside = 0, iterations = 0;
    uint32_t crc = 0;
    double dx = (X_MAX - X_MIN) / size, dy = (Y_MAX - Y_MIN) / size;
    for (unsigned py = 0; py < size; py++) {
        double cy = Y_MAX - (py + 0.5) * dy;
        for (unsigned px = 0; px < size; px++) {
            double cx = X_MIN + (px + 0.5) * dx;
            unsigned n = escape_time(cx, cy, max_iter);
            iterations += n;
            if (n == max_iter) {
                inside++;
                row[px] = 0;
            } else {
                row[px] = (unsigned char)(1 + n % 255);
            }
        }
        crc = iexec_crc32(crc, row, size);
        if (pgm != NULL && fwrite(row, 1, size, pgm) != size) {
            iexec_fail(IEXEC_EXIT_FAILED, "cannot write %s: %s", path, strerror(errno));
        }
    }
    if (pgm != NULL && fclose(pgm) != 0) {
        iexec_fail(IEXEC_EXIT_FAILED, "cannot write %s: %s", path, strerror(errno));
    }

    if (iexec_join(path, sizeof path, iexec_out_dir(), "result.json") != 0) {
        iexec_fail(IEXEC_EXIT_FAILED, "IEXEC_OUT is too long");
    }
    FILE *out = fopen(path, "w");
    if (out == NULL) {
        iexec_fail(IEXEC_EXIT_FAILED, "cannot create %s: %s", path, strerror(errno));
    }
    fprintf(out, "{\"size\": %u, \"max_iter\": %u, \"inside\": %llu, \"iterations\": %llu, \"crc32\": \"%08x\"}\n",
            size, max_iter, inside, iterations, (unsigned)crc);
    if (fclose(out) != 0) {
        iexec_fail(IEXEC_EXIT_FAILED, "cannot write %s: %s", path, strerror(errno));
    }
    if (iexec_write_computed("result.json", NULL) != 0) {
        iexec_fail(IEXEC_EXIT_FAILED, "cannot write computed.json: %s", strerror(errno));
    }
    printf("%ux%u, max %u iterations: %llu inside, %llu iterations, crc32 %08x\n", size, size, max_iter, inside,
           iterations, (unsigned)crc);
    free(row);
    return IEXEC_EXIT_OK;
}
