/*
 * csv-stats - per-column statistics of a CSV dataset.
 *
 * Usage: csv-stats [COLUMN...]
 *
 * Reads IEXEC_IN/IEXEC_DATASET_FILENAME: a header row of column names, then
 * rows of numbers. RFC 4180 quoting ("a, b", "say ""hi"""), LF, CRLF or CR line
 * ends, an optional UTF-8 byte order mark and blank lines are accepted. A cell
 * that is empty (or only spaces) is counted as empty, not as zero. Without
 * arguments every column must be numeric; with arguments only the named
 * columns are read (and checked), so a CSV may carry text columns too.
 *
 * Writes IEXEC_OUT/stats.json:
 *   {"dataset": "...", "rows": N, "columns": [
 *     {"name": "...", "count": N, "empty": N, "min": X, "max": X, "mean": X}, ...]}
 * where count is the number of numeric cells, and min/max/mean are null for a
 * column without any. Numbers are printed with "%.15g" (the C locale is never
 * changed): 15 significant digits round-trip any decimal input of up to 15
 * digits, and the text is the same on every platform with a correctly
 * rounding printf (musl/wasi-libc and glibc both are). The mean is the
 * compensated (Neumaier) sum divided by the count; null if it overflows.
 * IEXEC_OUT/computed.json names stats.json as the deterministic output.
 *
 * Exit codes: 0 done; 1 the dataset is missing, unreadable or malformed (a
 * cell that is not a number, an unterminated quote, a row longer than the
 * header); 2 an argument names no column of the header. On failure the
 * message goes to stderr and IEXEC_OUT/error.txt, and computed.json points at
 * error.txt.
 */
#include <ctype.h>
#include <math.h>

#include "iexec_app.h"

/* One parsed field: a slice of the (modified in place) input buffer. */
typedef struct {
    char *text;
    size_t len;
} field_t;

typedef struct {
    field_t *fields;
    size_t count;
    size_t cap;
} record_t;

/* Parser position over the whole file. */
typedef struct {
    char *p;
    char *end;
    unsigned long line; /* 1-based line of the current position */
} parser_t;

typedef struct {
    const char *name;
    int selected;
    unsigned long count;
    unsigned long empty;
    double min;
    double max;
    double sum;
    double compensation;
} column_t;

static void push_field(record_t *r, char *text, size_t len) {
    if (r->count == r->cap) {
        size_t cap = r->cap == 0 ? 16 : r->cap * 2;
        field_t *bigger = realloc(r->fields, cap * sizeof *bigger);
        if (bigger == NULL) {
            iexec_fail(IEXEC_EXIT_FAILED, "out of memory");
        }
        r->fields = bigger;
        r->cap = cap;
    }
    r->fields[r->count].text = text;
    r->fields[r->count].len = len;
    r->count++;
}

/*
 * Parses the next record into `r` (fields are NUL-terminated in place).
 * Returns 0 at end of input, 1 when a record was read. `*start_line` gets
 * the line the record starts on.
 */
static int next_record(parser_t *ps, record_t *r, unsigned long *start_line) {
    r->count = 0;
    if (ps->p >= ps->end) {
        return 0;
    }
    *start_line = ps->line;
    for (;;) {
        char *field = ps->p;
        char *w = ps->p; /* write cursor: unquoting shrinks the text in place */
        if (ps->p < ps->end && *ps->p == '"') {
            unsigned long quote_line = ps->line;
            ps->p++;
            for (;;) {
                if (ps->p >= ps->end) {
                    iexec_fail(IEXEC_EXIT_FAILED, "line %lu: quoted field is not closed before the end of the file",
                               quote_line);
                }
                char c = *ps->p++;
                if (c == '"') {
                    if (ps->p < ps->end && *ps->p == '"') {
                        *w++ = '"';
                        ps->p++;
                        continue;
                    }
                    break;
                }
                if (c == '\n' || (c == '\r' && !(ps->p < ps->end && *ps->p == '\n'))) {
                    ps->line++;
                }
                *w++ = c;
            }
            if (ps->p < ps->end && *ps->p != ',' && *ps->p != '\n' && *ps->p != '\r') {
                iexec_fail(IEXEC_EXIT_FAILED, "line %lu: expected a comma or a line end after a closing quote, found '%c'",
                           ps->line, *ps->p);
            }
        } else {
            while (ps->p < ps->end && *ps->p != ',' && *ps->p != '\n' && *ps->p != '\r') {
                *w++ = *ps->p++;
            }
        }
        size_t len = (size_t)(w - field);
        /* The separator or line end is consumed before the NUL is written over it. */
        int end_of_record = 1;
        if (ps->p < ps->end) {
            char c = *ps->p++;
            if (c == ',') {
                end_of_record = 0;
            } else {
                if (c == '\r' && ps->p < ps->end && *ps->p == '\n') {
                    ps->p++;
                }
                ps->line++;
            }
        }
        field[len] = '\0';
        push_field(r, field, len);
        if (end_of_record) {
            return 1;
        }
    }
}

/* A record made of one empty field is a blank line. */
static int is_blank(const record_t *r) { return r->count == 1 && r->fields[0].len == 0; }

/* Strips spaces and tabs around a cell, in place. */
static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) {
        s[--n] = '\0';
    }
    return s;
}

/* Accepts [+-]digits[.digits][(e|E)[+-]digits] (and ".5", "5."), nothing else: no hex, inf or nan. */
static int looks_numeric(const char *s) {
    const char *p = s;
    if (*p == '+' || *p == '-') {
        p++;
    }
    int digits = 0;
    while (isdigit((unsigned char)*p)) {
        p++;
        digits++;
    }
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p)) {
            p++;
            digits++;
        }
    }
    if (digits == 0) {
        return 0;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') {
            p++;
        }
        if (!isdigit((unsigned char)*p)) {
            return 0;
        }
        while (isdigit((unsigned char)*p)) {
            p++;
        }
    }
    return *p == '\0';
}

static void add_value(column_t *c, double x) {
    if (c->count == 0 || x < c->min) {
        c->min = x;
    }
    if (c->count == 0 || x > c->max) {
        c->max = x;
    }
    /* Neumaier's compensated sum: the mean of 0.1, 0.2, 0.3 is 0.2, not 0.20000000000000004. */
    double t = c->sum + x;
    if (fabs(c->sum) >= fabs(x)) {
        c->compensation += (c->sum - t) + x;
    } else {
        c->compensation += (x - t) + c->sum;
    }
    c->sum = t;
    c->count++;
}

static void print_number(FILE *f, double x) {
    if (!isfinite(x)) {
        fputs("null", f);
        return;
    }
    if (x == 0) {
        x = 0; /* no "-0" */
    }
    fprintf(f, "%.15g", x);
}

int main(int argc, char **argv) {
    const char *dataset = getenv("IEXEC_DATASET_FILENAME");
    if (dataset == NULL || dataset[0] == '\0') {
        iexec_fail(IEXEC_EXIT_FAILED, "no dataset: IEXEC_DATASET_FILENAME is not set");
    }
    char path[IEXEC_PATH_MAX];
    if (strchr(dataset, '/') != NULL || iexec_join(path, sizeof path, iexec_in_dir(), dataset) != 0) {
        iexec_fail(IEXEC_EXIT_FAILED, "dataset name must be a plain file name, found \"%s\"", dataset);
    }
    size_t size = 0;
    char *data = iexec_read_file(path, &size);
    if (data == NULL) {
        iexec_fail(IEXEC_EXIT_FAILED, "cannot read dataset %s: %s", path, strerror(errno));
    }

    parser_t ps = {data, data + size, 1};
    if (size >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0) {
        ps.p += 3;
    }

    record_t rec = {NULL, 0, 0};
    unsigned long line = 0;
    int got;
    while ((got = next_record(&ps, &rec, &line)) == 1 && is_blank(&rec)) {
    }
    if (got == 0) {
        iexec_fail(IEXEC_EXIT_FAILED, "dataset %s is empty: expected a header row", dataset);
    }

    size_t ncols = rec.count;
    column_t *cols = calloc(ncols, sizeof *cols);
    if (cols == NULL) {
        iexec_fail(IEXEC_EXIT_FAILED, "out of memory");
    }
    for (size_t i = 0; i < ncols; i++) {
        cols[i].name = trim(rec.fields[i].text);
        cols[i].selected = argc <= 1;
    }
    for (int a = 1; a < argc; a++) {
        int found = 0;
        for (size_t i = 0; i < ncols; i++) {
            if (strcmp(cols[i].name, argv[a]) == 0) {
                cols[i].selected = 1;
                found = 1;
            }
        }
        if (!found) {
            iexec_fail(IEXEC_EXIT_USAGE, "argument %d: expected a column name of the header, found \"%s\"", a, argv[a]);
        }
    }

    unsigned long rows = 0;
    while (next_record(&ps, &rec, &line) == 1) {
        if (is_blank(&rec)) {
            continue;
        }
        if (rec.count > ncols) {
            iexec_fail(IEXEC_EXIT_FAILED, "line %lu: expected at most %zu fields (the header's), found %zu", line, ncols,
                       rec.count);
        }
        rows++;
        for (size_t i = 0; i < ncols; i++) {
            if (!cols[i].selected) {
                continue;
            }
            char *cell = i < rec.count ? trim(rec.fields[i].text) : "";
            if (cell[0] == '\0') {
                cols[i].empty++;
                continue;
            }
            errno = 0;
            double x = looks_numeric(cell) ? strtod(cell, NULL) : NAN;
            if (isnan(x)) {
                iexec_fail(IEXEC_EXIT_FAILED, "line %lu, column \"%s\": expected a number, found \"%.64s\"", line,
                           cols[i].name, cell);
            }
            if (isinf(x)) {
                iexec_fail(IEXEC_EXIT_FAILED, "line %lu, column \"%s\": expected a finite number, found \"%.64s\"",
                           line, cols[i].name, cell);
            }
            add_value(&cols[i], x);
        }
    }

    char out_path[IEXEC_PATH_MAX];
    if (iexec_join(out_path, sizeof out_path, iexec_out_dir(), "stats.json") != 0) {
        iexec_fail(IEXEC_EXIT_FAILED, "IEXEC_OUT is too long");
    }
    FILE *out = fopen(out_path, "w");
    if (out == NULL) {
        iexec_fail(IEXEC_EXIT_FAILED, "cannot create %s: %s", out_path, strerror(errno));
    }
    fputs("{\n  \"dataset\": ", out);
    iexec_json_string(out, dataset);
    fprintf(out, ",\n  \"rows\": %lu,\n  \"columns\": [", rows);
    int first = 1;
    for (size_t i = 0; i < ncols; i++) {
        const column_t *c = &cols[i];
        if (!c->selected) {
            continue;
        }
        fputs(first ? "\n    {\"name\": " : ",\n    {\"name\": ", out);
        first = 0;
        iexec_json_string(out, c->name);
        fprintf(out, ", \"count\": %lu, \"empty\": %lu, \"min\": ", c->count, c->empty);
        if (c->count == 0) {
            fputs("null, \"max\": null, \"mean\": null}", out);
            continue;
        }
        print_number(out, c->min);
        fputs(", \"max\": ", out);
        print_number(out, c->max);
        fputs(", \"mean\": ", out);
        print_number(out, (c->sum + c->compensation) / (double)c->count);
        fputs("}", out);
    }
    fputs(first ? "]\n}\n" : "\n  ]\n}\n", out);
    if (fclose(out) != 0) {
        iexec_fail(IEXEC_EXIT_FAILED, "cannot write %s: %s", out_path, strerror(errno));
    }
    if (iexec_write_computed("stats.json", NULL) != 0) {
        iexec_fail(IEXEC_EXIT_FAILED, "cannot write computed.json: %s", strerror(errno));
    }
    printf("%lu rows, %zu columns -> %s\n", rows, ncols, out_path);
    free(cols);
    free(rec.fields);
    free(data);
    return IEXEC_EXIT_OK;
}
