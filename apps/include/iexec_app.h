/*
 * iexec_app.h - small helpers shared by the example iExec apps.
 *
 * Header-only (static inline functions) so that every app stays one translation
 * unit: `clang --target=wasm32-wasi -I apps/include app.c` is the whole build.
 *
 * The iExec app contract, as the apps see it:
 *   argv            the task's iexec_args, split shell-like by the worker
 *   IEXEC_IN        folder holding the dataset and the input files (read only)
 *   IEXEC_OUT       folder for results; the app writes IEXEC_OUT/computed.json
 *   IEXEC_DATASET_FILENAME, IEXEC_INPUT_FILES_NUMBER, IEXEC_INPUT_FILE_NAME_<i>
 *
 * Failure convention used by every app here: when it can, a failing app still
 * writes IEXEC_OUT/error.txt and a computed.json whose deterministic-output-path
 * points at it (plus "error-message"), prints the message on stderr and exits
 * non-zero. The worker treats the non-zero exit as the failure; the files let a
 * requester read why.
 */
#ifndef IEXEC_APP_H
#define IEXEC_APP_H

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Exit codes shared by the apps. */
#define IEXEC_EXIT_OK 0
#define IEXEC_EXIT_FAILED 1 /* bad or missing input data, I/O error */
#define IEXEC_EXIT_USAGE 2  /* bad arguments */

#define IEXEC_PATH_MAX 4096

/* Value of an environment variable, or `fallback` when unset or empty. */
static inline const char *iexec_env(const char *name, const char *fallback) {
    const char *value = getenv(name);
    return (value != NULL && value[0] != '\0') ? value : fallback;
}

static inline const char *iexec_in_dir(void) { return iexec_env("IEXEC_IN", "/iexec_in"); }
static inline const char *iexec_out_dir(void) { return iexec_env("IEXEC_OUT", "/iexec_out"); }

/* Joins `dir` and `name` into `buf`; returns 0, or -1 when it does not fit. */
static inline int iexec_join(char *buf, size_t size, const char *dir, const char *name) {
    int n = snprintf(buf, size, "%s/%s", dir, name);
    return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

/* Writes `s` as a JSON string literal (quotes included). */
static inline void iexec_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20) {
                fprintf(f, "\\u%04x", (unsigned)*p);
            } else {
                fputc(*p, f);
            }
        }
    }
    fputc('"', f);
}

/*
 * Writes IEXEC_OUT/computed.json naming IEXEC_OUT/<result_name> as the
 * deterministic output; with an error message when `error` is not NULL.
 * Returns 0, or -1 (errno set) when the file cannot be written.
 */
static inline int iexec_write_computed(const char *result_name, const char *error) {
    char result_path[IEXEC_PATH_MAX];
    char computed_path[IEXEC_PATH_MAX];
    if (iexec_join(result_path, sizeof result_path, iexec_out_dir(), result_name) != 0 ||
        iexec_join(computed_path, sizeof computed_path, iexec_out_dir(), "computed.json") != 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    FILE *f = fopen(computed_path, "w");
    if (f == NULL) {
        return -1;
    }
    fputs("{\"deterministic-output-path\": ", f);
    iexec_json_string(f, result_path);
    if (error != NULL) {
        fputs(", \"error-message\": ", f);
        iexec_json_string(f, error);
    }
    fputs("}\n", f);
    return fclose(f) == 0 ? 0 : -1;
}

/*
 * Reports a failure the iExec way and exits with `code`: the message goes to
 * stderr, to IEXEC_OUT/error.txt and into computed.json (best effort: if
 * IEXEC_OUT is not writable, only stderr gets it).
 */
static inline void iexec_fail(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
static inline void iexec_fail(int code, const char *fmt, ...) {
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    fprintf(stderr, "error: %s\n", message);

    char path[IEXEC_PATH_MAX];
    if (iexec_join(path, sizeof path, iexec_out_dir(), "error.txt") == 0) {
        FILE *f = fopen(path, "w");
        if (f != NULL) {
            fprintf(f, "%s\n", message);
            if (fclose(f) == 0) {
                (void)iexec_write_computed("error.txt", message);
            }
        }
    }
    exit(code);
}

/* Standard CRC-32 (IEEE 802.3, as zlib's crc32 and `cksum -a crc32b`). */
static inline uint32_t iexec_crc32(uint32_t crc, const unsigned char *p, size_t n) {
    crc = ~crc;
    while (n-- > 0) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
        }
    }
    return ~crc;
}

/*
 * Reads a whole file into a malloc'd buffer (NUL-terminated, the NUL not
 * counted in *len). Returns NULL with errno set on failure.
 */
static inline char *iexec_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    size_t cap = 4096, used = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        if (used + 1 >= cap) {
            char *bigger = realloc(buf, cap * 2);
            if (bigger == NULL) {
                free(buf);
                buf = NULL;
                errno = ENOMEM;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        size_t got = fread(buf + used, 1, cap - used - 1, f);
        used += got;
        if (got == 0) {
            if (ferror(f)) {
                free(buf);
                buf = NULL;
                errno = EIO;
            }
            break;
        }
    }
    int saved = errno;
    fclose(f);
    if (buf == NULL) {
        errno = saved;
        return NULL;
    }
    buf[used] = '\0';
    *len = used;
    return buf;
}

/* Parses a non-negative decimal integer (digits only, no sign, <= max). */
static inline int iexec_parse_uint(const char *s, unsigned long max, unsigned long *out) {
    if (s == NULL || *s == '\0') {
        return -1;
    }
    unsigned long v = 0;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p < '0' || *p > '9') {
            return -1;
        }
        unsigned digit = (unsigned)(*p - '0');
        if (v > (max - digit) / 10) {
            return -1;
        }
        v = v * 10 + digit;
    }
    *out = v;
    return 0;
}

#endif /* IEXEC_APP_H */
