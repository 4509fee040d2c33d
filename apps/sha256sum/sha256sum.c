/*
 * sha256sum - SHA-256 of the dataset and input files; an integer benchmark.
 *
 * Usage: sha256sum [REPEAT]
 *
 * Hashes IEXEC_IN/IEXEC_DATASET_FILENAME (if set) and every
 * IEXEC_IN/IEXEC_INPUT_FILE_NAME_<i>, and writes IEXEC_OUT/sha256sums.txt in
 * the format of coreutils' sha256sum ("<hex>  <name>", one line per file,
 * dataset first). With REPEAT (1..1000000, default 1) each digest is the
 * SHA-256 of the file's bytes repeated REPEAT times, so the work is
 * REPEAT x the total input size; with REPEAT 1 the file can be checked with
 * `cd IEXEC_IN && sha256sum -c sha256sums.txt`. computed.json names
 * sha256sums.txt as the deterministic output.
 *
 * mandelbrot measures a floating-point loop; this one is 32-bit integer
 * arithmetic, shifts and memory loads, closer to what most apps do.
 *
 * Exit codes: 0 done; 1 a file is missing or unreadable, or
 * IEXEC_INPUT_FILES_NUMBER is not a number; 2 bad arguments.
 */
#define _POSIX_C_SOURCE 200809L /* open_memstream */

#include "iexec_app.h"

#define MAX_INPUT_FILES 1000

typedef struct {
    uint32_t state[8];
    uint64_t bytes;
    unsigned char block[64];
    size_t used;
} sha256_t;

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t rotr(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }

static void compress(uint32_t state[8], const unsigned char *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++) {
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
               (uint32_t)p[4 * i + 3];
    }
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
}

static void sha256_init(sha256_t *s) {
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->state, iv, sizeof iv);
    s->bytes = 0;
    s->used = 0;
}

static void sha256_update(sha256_t *s, const unsigned char *p, size_t n) {
    s->bytes += n;
    if (s->used > 0) {
        size_t take = 64 - s->used < n ? 64 - s->used : n;
        memcpy(s->block + s->used, p, take);
        s->used += take;
        p += take;
        n -= take;
        if (s->used < 64) {
            return;
        }
        compress(s->state, s->block);
        s->used = 0;
    }
    for (; n >= 64; p += 64, n -= 64) {
        compress(s->state, p);
    }
    memcpy(s->block, p, n);
    s->used = n;
}

static void sha256_final(sha256_t *s, unsigned char out[32]) {
    uint64_t bits = s->bytes * 8;
    unsigned char pad[72] = {0x80};
    size_t pad_len = (s->used < 56 ? 56 : 120) - s->used;
    for (int i = 0; i < 8; i++) {
        pad[pad_len + i] = (unsigned char)(bits >> (56 - 8 * i));
    }
    sha256_update(s, pad, pad_len + 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (unsigned char)(s->state[i] >> 24);
        out[4 * i + 1] = (unsigned char)(s->state[i] >> 16);
        out[4 * i + 2] = (unsigned char)(s->state[i] >> 8);
        out[4 * i + 3] = (unsigned char)s->state[i];
    }
}

/* Appends "<hex>  <name>\n" for IEXEC_IN/name (content repeated `repeat` times) to `out`. */
static void hash_file(FILE *out, const char *role, const char *name, unsigned long repeat) {
    char path[IEXEC_PATH_MAX];
    if (strchr(name, '/') != NULL || strchr(name, '\n') != NULL ||
        iexec_join(path, sizeof path, iexec_in_dir(), name) != 0) {
        iexec_fail(IEXEC_EXIT_FAILED, "%s name must be a plain file name, found \"%s\"", role, name);
    }
    size_t len = 0;
    char *data = iexec_read_file(path, &len);
    if (data == NULL) {
        iexec_fail(IEXEC_EXIT_FAILED, "cannot read %s %s: %s", role, path, strerror(errno));
    }
    sha256_t s;
    sha256_init(&s);
    for (unsigned long r = 0; r < repeat; r++) {
        sha256_update(&s, (const unsigned char *)data, len);
    }
    free(data);
    unsigned char digest[32];
    sha256_final(&s, digest);
    for (int i = 0; i < 32; i++) {
        fprintf(out, "%02x", digest[i]);
    }
    fprintf(out, "  %s\n", name);
}

int main(int argc, char **argv) {
    if (argc > 2) {
        iexec_fail(IEXEC_EXIT_USAGE, "expected at most 1 argument (REPEAT), found %d", argc - 1);
    }
    unsigned long repeat = 1;
    if (argc == 2 && (iexec_parse_uint(argv[1], 1000000, &repeat) != 0 || repeat == 0)) {
        iexec_fail(IEXEC_EXIT_USAGE, "REPEAT: expected a whole number from 1 to 1000000, found \"%s\"", argv[1]);
    }
    const char *count_text = iexec_env("IEXEC_INPUT_FILES_NUMBER", "0");
    unsigned long input_count = 0;
    if (iexec_parse_uint(count_text, MAX_INPUT_FILES, &input_count) != 0) {
        iexec_fail(IEXEC_EXIT_FAILED, "IEXEC_INPUT_FILES_NUMBER must be a number from 0 to %d, found \"%s\"",
                   MAX_INPUT_FILES, count_text);
    }

    /* Build the listing in memory: a failed task leaves no half-written sha256sums.txt. */
    char *listing = NULL;
    size_t listing_len = 0;
    FILE *mem = open_memstream(&listing, &listing_len);
    if (mem == NULL) {
        iexec_fail(IEXEC_EXIT_FAILED, "out of memory");
    }
    const char *dataset = getenv("IEXEC_DATASET_FILENAME");
    if (dataset != NULL && dataset[0] != '\0') {
        hash_file(mem, "dataset", dataset, repeat);
    }
    for (unsigned long i = 1; i <= input_count; i++) {
        char var[64];
        snprintf(var, sizeof var, "IEXEC_INPUT_FILE_NAME_%lu", i);
        const char *name = getenv(var);
        if (name == NULL || name[0] == '\0') {
            iexec_fail(IEXEC_EXIT_FAILED, "%s is not set but IEXEC_INPUT_FILES_NUMBER is %lu", var, input_count);
        }
        hash_file(mem, "input file", name, repeat);
    }
    if (fclose(mem) != 0) {
        iexec_fail(IEXEC_EXIT_FAILED, "out of memory");
    }

    char path[IEXEC_PATH_MAX];
    if (iexec_join(path, sizeof path, iexec_out_dir(), "sha256sums.txt") != 0) {
        iexec_fail(IEXEC_EXIT_FAILED, "IEXEC_OUT is too long");
    }
    FILE *out = fopen(path, "w");
    if (out == NULL) {
        iexec_fail(IEXEC_EXIT_FAILED, "cannot create %s: %s", path, strerror(errno));
    }
    if (fwrite(listing, 1, listing_len, out) != listing_len || fclose(out) != 0) {
        iexec_fail(IEXEC_EXIT_FAILED, "cannot write %s: %s", path, strerror(errno));
    }
    if (iexec_write_computed("sha256sums.txt", NULL) != 0) {
        iexec_fail(IEXEC_EXIT_FAILED, "cannot write computed.json: %s", strerror(errno));
    }
    fputs(listing, stdout);
    free(listing);
    return IEXEC_EXIT_OK;
}
