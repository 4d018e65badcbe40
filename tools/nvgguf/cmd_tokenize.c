/* nvgguf tokenize / detokenize: the model's tokenizer on the command line.
 *
 *   nvgguf tokenize MODEL.gguf [--file F] [--add-special] [--parse-special]
 *       reads text from F (or stdin), exactly as given (a trailing newline is text too), and
 *       prints the token ids on one line, separated by spaces.
 *   nvgguf detokenize MODEL.gguf [--special] [--no-cleanup] [ID...]
 *       turns ids (from the arguments, or whitespace- or comma-separated on stdin) back into
 *       text and writes it to stdout as is, with no newline added. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "nvl_driver/log.h"
#include "nvl_model.h"

static int open_vocab(const char *path, struct nvl_vocab **v)
{
    struct nvl_gguf *g = NULL;
    char err[512];
    int rc;

    rc = nvl_gguf_open(path, &g, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "nvgguf: %s: %s\n", path, err);
        return rc;
    }
    rc = nvl_vocab_load_gguf(g, v);
    nvl_gguf_close(g);
    if (rc)
        fprintf(stderr, "nvgguf: %s: cannot load the tokenizer: %s\n", path, nvl_strerror(rc));
    return rc;
}

/* Reads all of f into a malloc()ed buffer. */
static int read_all(FILE *f, char **out, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);

    if (!buf)
        return -ENOMEM;
    for (;;) {
        size_t got;

        if (n == cap) {
            char *p = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);

            if (!p) {
                free(buf);
                return -ENOMEM;
            }
            buf = p;
            cap *= 2;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                free(buf);
                return -EIO;
            }
            break;
        }
    }
    *out = buf;
    *len = n;
    return 0;
}

static void tokenize_usage(FILE *f)
{
    fprintf(f, "usage: nvgguf tokenize MODEL.gguf [--file F] [--add-special] [--parse-special]\n"
               "  Tokenizes the text of F (default: stdin) exactly as given and prints the ids\n"
               "  on one line.\n"
               "  --add-special    add BOS/EOS as the model's metadata says\n"
               "  --parse-special  turn control-token strings (\"<|im_start|>\") into their ids\n");
}

int nvgguf_cmd_tokenize(int argc, char **argv)
{
    static const struct option opts[] = {
        {"file", required_argument, NULL, 'f'},
        {"add-special", no_argument, NULL, 'a'},
        {"parse-special", no_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *file = NULL;
    unsigned flags = 0;
    struct nvl_vocab *v = NULL;
    int32_t *ids = NULL;
    size_t len, n_ids;
    char *text = NULL;
    FILE *in = stdin;
    int c, rc;

    optind = 1;
    while ((c = getopt_long(argc, argv, "f:aph", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            file = optarg;
            break;
        case 'a':
            flags |= NVL_TOKENIZE_ADD_SPECIAL;
            break;
        case 'p':
            flags |= NVL_TOKENIZE_PARSE_SPECIAL;
            break;
        case 'h':
            tokenize_usage(stdout);
            return 0;
        default:
            tokenize_usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        tokenize_usage(stderr);
        return 2;
    }

    if (file) {
        in = fopen(file, "rb");
        if (!in) {
            fprintf(stderr, "nvgguf: %s: %s\n", file, strerror(errno));
            return 1;
        }
    }
    rc = read_all(in, &text, &len);
    if (file)
        fclose(in);
    if (rc) {
        fprintf(stderr, "nvgguf: reading %s: %s\n", file ? file : "stdin", nvl_strerror(rc));
        return 1;
    }

    rc = open_vocab(argv[optind], &v);
    if (rc)
        goto out_free;
    rc = nvl_vocab_tokenize_alloc(v, text, len, flags, &ids, &n_ids);
    if (rc) {
        fprintf(stderr, "nvgguf: tokenize: %s\n", nvl_strerror(rc));
        goto out_free;
    }
    for (size_t i = 0; i < n_ids; i++)
        printf(i ? " %d" : "%d", ids[i]);
    printf("\n");

out_free:
    free(ids);
    nvl_vocab_destroy(v);
    free(text);
    return rc ? 1 : 0;
}

static void detokenize_usage(FILE *f)
{
    fprintf(f,
            "usage: nvgguf detokenize MODEL.gguf [--special] [--no-cleanup] [ID...]\n"
            "  Writes the text of the ids (from the arguments, or whitespace- or\n"
            "  comma-separated on stdin) to stdout, with no newline added.\n"
            "  --special     show control tokens (\"<|im_end|>\") instead of hiding them\n"
            "  --no-cleanup  keep spaces before punctuation (no clean_up_tokenization_spaces)\n");
}

/* Appends the ids in s (separated by whitespace or commas) to *ids. */
static int parse_ids(const char *s, int32_t **ids, size_t *n, size_t *cap)
{
    while (*s) {
        char *end;
        long id;

        if (strchr(" \t\r\n,", *s)) {
            s++;
            continue;
        }
        errno = 0;
        id = strtol(s, &end, 10);
        if (end == s || errno || id < 0 || id > INT32_MAX || (*end && !strchr(" \t\r\n,", *end))) {
            fprintf(stderr, "nvgguf: detokenize: '%.*s' is not a token id\n",
                    (int)strcspn(s, " \t\r\n,"), s);
            return -EINVAL;
        }
        if (*n == *cap) {
            size_t c = *cap ? 2 * *cap : 256;
            int32_t *p = realloc(*ids, c * sizeof(*p));

            if (!p)
                return -ENOMEM;
            *ids = p;
            *cap = c;
        }
        (*ids)[(*n)++] = (int32_t)id;
        s = end;
    }
    return 0;
}

int nvgguf_cmd_detokenize(int argc, char **argv)
{
    static const struct option opts[] = {
        {"special", no_argument, NULL, 's'},
        {"no-cleanup", no_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    unsigned flags = 0;
    struct nvl_vocab *v = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0, cap = 0, len;
    char *text = NULL;
    const char *model;
    int c, rc = 0;

    optind = 1;
    while ((c = getopt_long(argc, argv, "snh", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            flags |= NVL_DETOKENIZE_UNPARSE_SPECIAL;
            break;
        case 'n':
            flags |= NVL_DETOKENIZE_NO_CLEANUP;
            break;
        case 'h':
            detokenize_usage(stdout);
            return 0;
        default:
            detokenize_usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        detokenize_usage(stderr);
        return 2;
    }
    model = argv[optind++];

    if (optind < argc) {
        for (int i = optind; i < argc && !rc; i++)
            rc = parse_ids(argv[i], &ids, &n_ids, &cap);
    } else {
        char *in;
        size_t in_len;

        rc = read_all(stdin, &in, &in_len);
        if (!rc) {
            char *z = realloc(in, in_len + 1);

            if (!z) {
                free(in);
                rc = -ENOMEM;
            } else {
                z[in_len] = '\0';
                if (strlen(z) != in_len) {
                    fprintf(stderr, "nvgguf: detokenize: NUL byte in the input\n");
                    rc = -EINVAL;
                } else {
                    rc = parse_ids(z, &ids, &n_ids, &cap);
                }
                free(z);
            }
        }
    }
    if (rc)
        goto out_free;

    rc = open_vocab(model, &v);
    if (rc)
        goto out_free;
    rc = nvl_vocab_detokenize_alloc(v, ids, n_ids, flags, &text, &len);
    if (rc == -EINVAL) {
        fprintf(stderr, "nvgguf: detokenize: an id is not below the vocab size %u\n",
                nvl_vocab_n_tokens(v));
        goto out_free;
    }
    if (rc) {
        fprintf(stderr, "nvgguf: detokenize: %s\n", nvl_strerror(rc));
        goto out_free;
    }
    if (len && fwrite(text, 1, len, stdout) != len)
        rc = -EIO;

out_free:
    free(text);
    nvl_vocab_destroy(v);
    free(ids);
    return rc ? 1 : 0;
}
