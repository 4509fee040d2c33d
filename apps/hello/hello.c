/*
 * hello - the iExec "hello world" app, with a look at everything it was given.
 *
 * Usage: hello [WORD...]
 *
 * Prints "Hello, WORD...!" ("Hello, World!" without arguments) and writes
 * IEXEC_OUT/result.txt with: the greeting, every argument, every IEXEC_*
 * environment variable (sorted by name), and for the dataset
 * (IEXEC_DATASET_FILENAME, if set) and each input file
 * (IEXEC_INPUT_FILE_NAME_1..IEXEC_INPUT_FILES_NUMBER) read from IEXEC_IN its
 * name, byte count and CRC-32. IEXEC_OUT/computed.json names result.txt as
 * the deterministic output.
 *
 * Exit codes: 0 done; 1 a dataset or input file is missing or unreadable,
 * IEXEC_INPUT_FILES_NUMBER is not a number, or IEXEC_OUT is not writable
 * (error.txt and computed.json are still written when possible).
 */
#include "iexec_app.h"

extern char **environ;

#define MAX_INPUT_FILES 1000

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* What result.txt says about one file of IEXEC_IN. */
typedef struct {
    const char *name;
    size_t bytes;
    uint32_t crc;
} file_info_t;

/* Reads IEXEC_IN/name whole, or fails the task. */
static file_info_t inspect_file(const char *role, const char *name) {
    char path[IEXEC_PATH_MAX];
    if (strchr(name, '/') != NULL || iexec_join(path, sizeof path, iexec_in_dir(), name) != 0) {
        iexec_fail(IEXEC_EXIT_FAILED, "%s name must be a plain file name, found \"%s\"", role, name);
    }
    file_info_t info = {name, 0, 0};
    char *data = iexec_read_file(path, &info.bytes);
    if (data == NULL) {
        iexec_fail(IEXEC_EXIT_FAILED, "cannot read %s %s: %s", role, path, strerror(errno));
    }
    info.crc = iexec_crc32(0, (const unsigned char *)data, info.bytes);
    free(data);
    return info;
}

static void print_file(FILE *out, const file_info_t *info) {
    fprintf(out, "%s bytes=%zu crc32=%08x\n", info->name, info->bytes, (unsigned)info->crc);
}

int main(int argc, char **argv) {
    /* Greeting. */
    size_t greeting_len = 16;
    for (int i = 1; i < argc; i++) {
        greeting_len += strlen(argv[i]) + 1;
    }
    char *greeting = malloc(greeting_len);
    if (greeting == NULL) {
        iexec_fail(IEXEC_EXIT_FAILED, "out of memory");
    }
    strcpy(greeting, "Hello, ");
    if (argc <= 1) {
        strcat(greeting, "World");
    }
    for (int i = 1; i < argc; i++) {
        if (i > 1) {
            strcat(greeting, " ");
        }
        strcat(greeting, argv[i]);
    }
    strcat(greeting, "!");
    printf("%s\n", greeting);

    /* Read every file before writing anything: a failed task leaves no half-written result.txt. */
    const char *count_text = iexec_env("IEXEC_INPUT_FILES_NUMBER", "0");
    unsigned long input_count = 0;
    if (iexec_parse_uint(count_text, MAX_INPUT_FILES, &input_count) != 0) {
        iexec_fail(IEXEC_EXIT_FAILED, "IEXEC_INPUT_FILES_NUMBER must be a number from 0 to %d, found \"%s\"",
                   MAX_INPUT_FILES, count_text);
    }
    const char *dataset_name = getenv("IEXEC_DATASET_FILENAME");
    int has_dataset = dataset_name != NULL && dataset_name[0] != '\0';
    file_info_t dataset = {NULL, 0, 0};
    if (has_dataset) {
        dataset = inspect_file("dataset", dataset_name);
    }
    file_info_t *inputs = calloc(input_count + 1, sizeof *inputs);
    if (inputs == NULL) {
        iexec_fail(IEXEC_EXIT_FAILED, "out of memory");
    }
    for (unsigned long i = 1; i <= input_count; i++) {
        char var[64];
        snprintf(var, sizeof var, "IEXEC_INPUT_FILE_NAME_%lu", i);
        const char *name = getenv(var);
        if (name == NULL || name[0] == '\0') {
            iexec_fail(IEXEC_EXIT_FAILED, "%s is not set but IEXEC_INPUT_FILES_NUMBER is %lu", var, input_count);
        }
        inputs[i - 1] = inspect_file("input file", name);
    }

    char result_path[IEXEC_PATH_MAX];
    if (iexec_join(result_path, sizeof result_path, iexec_out_dir(), "result.txt") != 0) {
        iexec_fail(IEXEC_EXIT_FAILED, "IEXEC_OUT is too long");
    }
    FILE *out = fopen(result_path, "w");
    if (out == NULL) {
        iexec_fail(IEXEC_EXIT_FAILED, "cannot create %s: %s", result_path, strerror(errno));
    }

    fprintf(out, "%s\n", greeting);
    fprintf(out, "args: %d\n", argc - 1);
    for (int i = 1; i < argc; i++) {
        fprintf(out, "  [%d] %s\n", i, argv[i]);
    }

    /* Every IEXEC_* variable, sorted: the order the host passes them in must not matter. */
    size_t env_count = 0;
    for (char **e = environ; e != NULL && *e != NULL; e++) {
        if (strncmp(*e, "IEXEC_", 6) == 0) {
            env_count++;
        }
    }
    const char **env = calloc(env_count + 1, sizeof *env);
    if (env == NULL) {
        iexec_fail(IEXEC_EXIT_FAILED, "out of memory");
    }
    size_t k = 0;
    for (char **e = environ; e != NULL && *e != NULL; e++) {
        if (strncmp(*e, "IEXEC_", 6) == 0) {
            env[k++] = *e;
        }
    }
    qsort(env, env_count, sizeof *env, compare_strings);
    fprintf(out, "env: %zu\n", env_count);
    for (size_t i = 0; i < env_count; i++) {
        fprintf(out, "  %s\n", env[i]);
    }
    free(env);

    if (has_dataset) {
        fputs("dataset: ", out);
        print_file(out, &dataset);
    } else {
        fputs("dataset: none\n", out);
    }
    fprintf(out, "input files: %lu\n", input_count);
    for (unsigned long i = 1; i <= input_count; i++) {
        fprintf(out, "  [%lu] ", i);
        print_file(out, &inputs[i - 1]);
    }
    free(inputs);

    if (fclose(out) != 0) {
        iexec_fail(IEXEC_EXIT_FAILED, "cannot write %s: %s", result_path, strerror(errno));
    }
    if (iexec_write_computed("result.txt", NULL) != 0) {
        iexec_fail(IEXEC_EXIT_FAILED, "cannot write computed.json: %s", strerror(errno));
    }
    free(greeting);
    return IEXEC_EXIT_OK;
}
