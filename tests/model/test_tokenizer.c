/* Tokenizer tests.
 *
 * The references are independent of this code: llama.cpp's own test vectors
 * ($NVL_SHARED/models/llama.cpp-vocab/, the .inp and .out files, made by llama.cpp's
 * test-tokenizer-0) for the llama-spm, gpt-2 and llama-bpe vocabs, llama.cpp b4747's prompt ids for
 * stories260K (read from the reference file), and small hand-built vocabs whose right answer
 * follows from the algorithm's definition. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "model_test_util.h"
#include "nvl_model.h"

#define N_VECTORS 46
#define SEPARATOR "\n__ggml_vocab_test__\n"

static const char *shared_dir(void)
{
    const char *s = getenv("NVL_SHARED");

    return s ? s : "../shared";
}

static struct nvl_vocab *load_vocab(const char *path)
{
    struct nvl_gguf *g = NULL;
    struct nvl_vocab *v = NULL;
    char err[256];

    assert_int_equal(nvl_gguf_open(path, &g, err, sizeof(err)), 0);
    assert_int_equal(nvl_vocab_load_gguf(g, &v), 0);
    nvl_gguf_close(g);
    return v;
}

static void tokenize(const struct nvl_vocab *v, const char *text, size_t len, unsigned flags,
                     int32_t **ids, size_t *n)
{
    assert_int_equal(nvl_vocab_tokenize_alloc(v, text, len, flags, ids, n), 0);
}

static void tokenize_str(const struct nvl_vocab *v, const char *text, unsigned flags, int32_t **ids,
                         size_t *n)
{
    tokenize(v, text, strlen(text), flags, ids, n);
}

/* Parses space-separated ids from a line; returns the count. */
static size_t parse_ids(const char *line, const char *end, int32_t *ids, size_t cap)
{
    size_t n = 0;

    while (line < end) {
        char *next;
        long id = strtol(line, &next, 10);

        if (next == line)
            break;
        assert_true(n < cap);
        ids[n++] = (int32_t)id;
        line = next;
    }
    return n;
}

/* Runs all test vectors of one vocab: tokenizes each string (no BOS, no special parsing, as
 * test-tokenizer-0 does), compares with the expected ids, and checks that the ids detokenize
 * back to the string. */
static void run_vectors(const char *name, const char *gguf_rel, const char *out_rel)
{
    char path[1024], inp_path[1024], out_path[1024];
    size_t inp_len, out_len, passed = 0, round_trips = 0, n_cases = 0;
    struct nvl_vocab *v;
    char *inp, *out, *p, *line;
    struct timespec t0, t1;

    snprintf(path, sizeof(path), "%s/models/%s", shared_dir(), gguf_rel);
    snprintf(inp_path, sizeof(inp_path), "%s/models/llama.cpp-vocab/ggml-vocab-llama-spm.gguf.inp",
             shared_dir());
    snprintf(out_path, sizeof(out_path), "%s/models/llama.cpp-vocab/%s", shared_dir(), out_rel);
    inp = mt_read_file(inp_path, &inp_len);
    out = mt_read_file(out_path, &out_len);
    if (!inp || !out) {
        free(inp);
        free(out);
        skip();
    }

    clock_gettime(CLOCK_MONOTONIC, &t0);
    v = load_vocab(path);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    print_message("%s: %u tokens, %u merges, loaded in %.3f s\n", name, nvl_vocab_n_tokens(v),
                  nvl_vocab_n_merges(v),
                  (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);

    p = inp;
    line = out;
    for (;;) {
        char *sep = strstr(p, SEPARATOR);
        char *eol;
        int32_t expect[256], *ids;
        size_t n_expect, n, text_len;
        char *back;
        size_t back_len;
        bool ok;

        if (!sep)
            break;
        text_len = (size_t)(sep - p);
        eol = strchr(line, '\n');
        assert_non_null(eol);
        n_expect = parse_ids(line, eol, expect, 256);
        line = eol + 1;
        n_cases++;

        tokenize(v, p, text_len, 0, &ids, &n);
        ok = n == n_expect && (!n || !memcmp(ids, expect, n * sizeof(*ids)));
        passed += ok;
        if (!ok) {
            print_message("%s: case %zu '%.*s': got", name, n_cases, (int)text_len, p);
            for (size_t i = 0; i < n; i++)
                print_message(" %d", ids[i]);
            print_message("\n");
        }

        assert_int_equal(
            nvl_vocab_detokenize_alloc(v, ids, n, NVL_DETOKENIZE_NO_CLEANUP, &back, &back_len), 0);
        if (back_len == text_len && !memcmp(back, p, text_len))
            round_trips++;
        else
            print_message("%s: case %zu does not round-trip: '%s'\n", name, n_cases, back);
        free(back);
        free(ids);
        p = sep + strlen(SEPARATOR);
    }
    print_message("%s: %zu/%zu test vectors pass, %zu/%zu round-trip\n", name, passed, n_cases,
                  round_trips, n_cases);
    assert_int_equal(n_cases, N_VECTORS);
    assert_int_equal(passed, N_VECTORS);
    assert_int_equal(round_trips, N_VECTORS);
    nvl_vocab_destroy(v);
    free(inp);
    free(out);
}

static void test_vectors_llama_spm(void **state)
{
    (void)state;
    run_vectors("llama-spm", "llama.cpp-vocab/ggml-vocab-llama-spm.gguf",
                "ggml-vocab-llama-spm.gguf.out");
}

static void test_vectors_gpt2(void **state)
{
    (void)state;
    run_vectors("gpt-2", "llama.cpp-vocab/ggml-vocab-gpt-2.gguf", "ggml-vocab-gpt-2.gguf.out");
}

static void test_vectors_llama_bpe(void **state)
{
    (void)state;
    run_vectors("llama-bpe", "generated-vocab/ggml-vocab-llama-bpe.gguf",
                "ggml-vocab-llama-bpe.gguf.out");
}

/* stories260K: the prompt and its ids as llama.cpp b4747 tokenized them (add_bos=1), read from
 * the reference file; and the greedy continuation detokenizes to the text llama2.c prints. */
static void test_stories260k(void **state)
{
    char path[1024];
    size_t len, n_ref, n_greedy, n, text_len;
    char *ref, *prompt, *q, *ids_line, *greedy_line, *text;
    int32_t ref_ids[64], *greedy, *ids, *all;
    struct nvl_vocab *v;

    (void)state;
    snprintf(path, sizeof(path), "%s/models/reference-outputs/stories260K.llamacpp-b4747.ref.txt",
             shared_dir());
    ref = mt_read_file(path, &len);
    if (!ref)
        skip();
    snprintf(path, sizeof(path), "%s/models/stories260K.gguf", shared_dir());
    v = load_vocab(path);
    assert_int_equal(nvl_vocab_type(v), NVL_VOCAB_TYPE_SPM);
    assert_true(nvl_vocab_add_bos(v));

    prompt = strstr(ref, "# prompt: \"");
    assert_non_null(prompt);
    prompt += strlen("# prompt: \"");
    q = strchr(prompt, '"');
    assert_non_null(q);
    ids_line = strstr(ref, "\nprompt_ids:");
    assert_non_null(ids_line);
    ids_line += strlen("\nprompt_ids:");
    n_ref = parse_ids(ids_line, strchr(ids_line, '\n'), ref_ids, 64);
    assert_true(n_ref > 1);

    tokenize(v, prompt, (size_t)(q - prompt), NVL_TOKENIZE_ADD_SPECIAL, &ids, &n);
    assert_int_equal(n, n_ref);
    assert_memory_equal(ids, ref_ids, n * sizeof(*ids));

    /* Detokenizing prompt + greedy ids after the BOS gives the llama2.c story (llama2.c
     * doc/stories260K.md; the same text the models README quotes). The space SPM put in front of
     * "Once" is removed; llama.cpp keeps it when the BOS itself is passed in, and so do we. */
    greedy_line = strstr(ref, "\ngreedy_ids:");
    assert_non_null(greedy_line);
    greedy_line += strlen("\ngreedy_ids:");
    greedy = calloc(512, sizeof(*greedy));
    assert_non_null(greedy);
    n_greedy = parse_ids(greedy_line, greedy_line + strcspn(greedy_line, "\n"), greedy, 512);
    assert_int_equal(n_greedy, 200);
    all = calloc(n + n_greedy, sizeof(*all));
    assert_non_null(all);
    memcpy(all, ids, n * sizeof(*ids));
    memcpy(all + n, greedy, n_greedy * sizeof(*greedy));
    assert_int_equal(nvl_vocab_detokenize_alloc(v, all, n + n_greedy, NVL_DETOKENIZE_REMOVE_SPECIAL,
                                                &text, &text_len),
                     0);
    assert_true(text[0] == ' ');
    free(text);
    assert_int_equal(nvl_vocab_detokenize_alloc(v, all + 1, n - 1 + n_greedy, 0, &text, &text_len),
                     0);
    print_message("stories260K: %.120s...\n", text);
    assert_true(strncmp(text,
                        "Once upon a time, there was a little girl named Lily. She loved to play "
                        "outside in the park.",
                        strlen("Once upon a time, there was a little girl named Lily. She loved "
                               "to play outside in the park.")) == 0);
    free(text);
    free(all);
    free(greedy);
    free(ids);
    nvl_vocab_destroy(v);
    free(ref);
}

/* The expected ids of one test-vector string, looked up by its text. */
static size_t vector_ids(const char *out_rel, const char *want, int32_t *ids, size_t cap)
{
    char path[1024];
    size_t inp_len, out_len, n = 0;
    char *inp, *out, *p, *line;
    bool found = false;

    snprintf(path, sizeof(path), "%s/models/llama.cpp-vocab/ggml-vocab-llama-spm.gguf.inp",
             shared_dir());
    inp = mt_read_file(path, &inp_len);
    snprintf(path, sizeof(path), "%s/models/llama.cpp-vocab/%s", shared_dir(), out_rel);
    out = mt_read_file(path, &out_len);
    assert_non_null(inp);
    assert_non_null(out);
    for (p = inp, line = out; !found;) {
        char *sep = strstr(p, SEPARATOR);
        char *eol = strchr(line, '\n');

        assert_non_null(sep);
        assert_non_null(eol);
        if ((size_t)(sep - p) == strlen(want) && !memcmp(p, want, strlen(want))) {
            n = parse_ids(line, eol, ids, cap);
            found = true;
        }
        p = sep + strlen(SEPARATOR);
        line = eol + 1;
    }
    free(inp);
    free(out);
    return n;
}

static void test_special_llama_bpe(void **state)
{
    char path[1024];
    int32_t hello[16], *ids;
    size_t n_hello, n;
    struct nvl_vocab *v;
    char *text;
    size_t len;

    (void)state;
    snprintf(path, sizeof(path), "%s/models/generated-vocab/ggml-vocab-llama-bpe.gguf",
             shared_dir());
    v = load_vocab(path);
    n_hello = vector_ids("ggml-vocab-llama-bpe.gguf.out", "Hello", hello, 16);
    assert_true(n_hello > 0);
    assert_int_equal(nvl_vocab_bos(v), nvl_vocab_find_token(v, "<|begin_of_text|>", 17));
    assert_int_equal(nvl_vocab_eot(v), nvl_vocab_find_token(v, "<|eot_id|>", 10));
    assert_true(nvl_vocab_add_bos(v)); /* llama-bpe implies it */
    assert_true(nvl_vocab_is_eog(v, nvl_vocab_eos(v)));
    assert_true(nvl_vocab_is_eog(v, nvl_vocab_eot(v)));
    assert_false(nvl_vocab_is_eog(v, hello[0]));
    assert_false(nvl_vocab_is_eog(v, -1));
    assert_false(nvl_vocab_is_eog(v, 1 << 30));

    /* With parse_special the control strings become their ids; BOS is added once in front. */
    tokenize_str(v, "Hello<|eot_id|>", NVL_TOKENIZE_ADD_SPECIAL | NVL_TOKENIZE_PARSE_SPECIAL, &ids,
                 &n);
    assert_int_equal(n, n_hello + 2);
    assert_int_equal(ids[0], nvl_vocab_bos(v));
    assert_memory_equal(ids + 1, hello, n_hello * sizeof(*ids));
    assert_int_equal(ids[n - 1], nvl_vocab_eot(v));

    /* Control tokens are hidden when detokenizing unless asked for. */
    assert_int_equal(nvl_vocab_detokenize_alloc(v, ids, n, 0, &text, &len), 0);
    assert_string_equal(text, "Hello");
    free(text);
    assert_int_equal(
        nvl_vocab_detokenize_alloc(v, ids, n, NVL_DETOKENIZE_UNPARSE_SPECIAL, &text, &len), 0);
    assert_string_equal(text, "<|begin_of_text|>Hello<|eot_id|>");
    free(text);
    free(ids);

    /* Without parse_special the same string is plain text. */
    tokenize_str(v, "<|eot_id|>", 0, &ids, &n);
    assert_true(n > 1);
    for (size_t i = 0; i < n; i++)
        assert_false(nvl_vocab_is_control(v, ids[i]));
    free(ids);
    nvl_vocab_destroy(v);
}

static void test_special_spm(void **state)
{
    char path[1024];
    int32_t hello[16], *ids, *plain;
    size_t n_hello, n, n_plain;
    struct nvl_vocab *v;
    const char *piece;
    size_t len;

    (void)state;
    snprintf(path, sizeof(path), "%s/models/llama.cpp-vocab/ggml-vocab-llama-spm.gguf",
             shared_dir());
    v = load_vocab(path);
    n_hello = vector_ids("ggml-vocab-llama-spm.gguf.out", "Hello", hello, 16);
    assert_int_equal(nvl_vocab_bos(v), 1);
    assert_int_equal(nvl_vocab_eos(v), 2);
    assert_int_equal(nvl_vocab_unk(v), 0);
    assert_true(nvl_vocab_is_eog(v, 2));
    assert_int_equal(nvl_vocab_nl(v), nvl_vocab_find_token(v, "<0x0A>", 6));

    /* After a special token SPM puts the space prefix in again: "<s>Hello" = <s> + "Hello". */
    tokenize_str(v, "<s>Hello", NVL_TOKENIZE_PARSE_SPECIAL, &ids, &n);
    assert_int_equal(n, n_hello + 1);
    assert_int_equal(ids[0], 1);
    assert_memory_equal(ids + 1, hello, n_hello * sizeof(*ids));
    free(ids);
    tokenize_str(v, "<s>Hello", 0, &plain, &n_plain);
    for (size_t i = 0; i < n_plain; i++)
        assert_int_not_equal(plain[i], 1);
    free(plain);

    /* add_special with add_bos (stored in the file) and without add_eos. */
    tokenize_str(v, "Hello", NVL_TOKENIZE_ADD_SPECIAL, &ids, &n);
    assert_int_equal(n, n_hello + 1);
    assert_int_equal(ids[0], 1);
    free(ids);
    tokenize_str(v, "", NVL_TOKENIZE_ADD_SPECIAL, &ids, &n);
    assert_int_equal(n, 1);
    free(ids);
    tokenize_str(v, "", 0, &ids, &n);
    assert_int_equal(n, 0);
    assert_null(ids);

    /* Pieces: "▁" is a space, byte tokens are their byte, control tokens hidden by default. */
    piece = nvl_vocab_token_piece(v, nvl_vocab_find_token(v, "<0x0A>", 6), false, &len);
    assert_int_equal(len, 1);
    assert_int_equal(piece[0], '\n');
    piece = nvl_vocab_token_piece(v, hello[0], false, &len);
    assert_string_equal(piece, " Hello");
    piece = nvl_vocab_token_piece(v, 1, false, &len);
    assert_int_equal(len, 0);
    piece = nvl_vocab_token_piece(v, 1, true, &len);
    assert_string_equal(piece, "<s>");
    assert_null(nvl_vocab_token_piece(v, 32000, true, &len));
    nvl_vocab_destroy(v);
}

static void test_gpt2_cleanup_and_errors(void **state)
{
    char path[1024], buf[4];
    struct nvl_vocab *v;
    int32_t *ids, small[2], bad = 50257;
    size_t n, len, n2;
    char *text;

    (void)state;
    snprintf(path, sizeof(path), "%s/models/llama.cpp-vocab/ggml-vocab-gpt-2.gguf", shared_dir());
    v = load_vocab(path);
    assert_int_equal(nvl_vocab_type(v), NVL_VOCAB_TYPE_BPE);
    assert_false(nvl_vocab_add_bos(v));
    assert_int_equal(nvl_vocab_eos(v), 50256);
    assert_true(nvl_vocab_is_eog(v, 50256));

    /* "<|endoftext|>" parses to its id only with parse_special. */
    tokenize_str(v, "<|endoftext|>", NVL_TOKENIZE_PARSE_SPECIAL, &ids, &n);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 50256);
    free(ids);

    /* gpt-2 detokenizes with llama.cpp's clean_up_tokenization_spaces. */
    tokenize_str(v, "Hello , world . It 's done", 0, &ids, &n);
    assert_int_equal(nvl_vocab_detokenize_alloc(v, ids, n, 0, &text, &len), 0);
    assert_string_equal(text, "Hello, world. It's done");
    free(text);
    assert_int_equal(nvl_vocab_detokenize_alloc(v, ids, n, NVL_DETOKENIZE_NO_CLEANUP, &text, &len),
                     0);
    assert_string_equal(text, "Hello , world . It 's done");
    free(text);

    /* Too small buffers report the size needed. */
    assert_int_equal(nvl_vocab_tokenize(v, "Hello , world", 13, 0, small, 2, &n2), -ENOSPC);
    assert_true(n2 > 2);
    assert_int_equal(
        nvl_vocab_detokenize(v, ids, n, NVL_DETOKENIZE_NO_CLEANUP, buf, sizeof(buf), &len),
        -ENOSPC);
    assert_int_equal(len, strlen("Hello , world . It 's done"));
    free(ids);

    /* Ids outside the vocab are refused. */
    assert_int_equal(nvl_vocab_detokenize(v, &bad, 1, 0, buf, sizeof(buf), &len), -EINVAL);

    /* Invalid UTF-8 is tolerated and every byte comes back as U+FFFD's bytes. */
    tokenize_str(v,
                 "a\xff"
                 "b",
                 0, &ids, &n);
    assert_int_equal(nvl_vocab_detokenize_alloc(v, ids, n, 0, &text, &len), 0);
    assert_string_equal(text, "a\xef\xbf\xbd"
                              "b");
    free(text);
    free(ids);
    nvl_vocab_destroy(v);
}

/* A hand-built SPM vocab: the merges must follow the scores, and characters without a token
 * must fall back to bytes. */
static void test_spm_handmade(void **state)
{
    /* 3 specials, 256 byte tokens, then pieces. */
    static const char *const pieces[] = {"▁", "a", "b", "c", "ab", "bc", "▁a", "▁abc"};
    static const float piece_scores[] = {-1.0f, -2.0f, -2.0f, -2.0f, -3.0f, -1.5f, -1.0f, -0.5f};
    const char *tokens[3 + 256 + 8];
    char bytes[256][7];
    float scores[3 + 256 + 8] = {0};
    int32_t types[3 + 256 + 8];
    struct nvl_vocab_desc d;
    struct nvl_vocab *v;
    int32_t *ids;
    size_t n;
    char *text;
    size_t len;
    uint32_t nt = 0;

    (void)state;
    tokens[nt] = "<unk>";
    types[nt++] = NVL_TOKEN_TYPE_UNKNOWN;
    tokens[nt] = "<s>";
    types[nt++] = NVL_TOKEN_TYPE_CONTROL;
    tokens[nt] = "</s>";
    types[nt++] = NVL_TOKEN_TYPE_CONTROL;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof(bytes[b]), "<0x%02X>", b);
        tokens[nt] = bytes[b];
        types[nt++] = NVL_TOKEN_TYPE_BYTE;
    }
    for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
        tokens[nt] = pieces[i];
        scores[nt] = piece_scores[i];
        types[nt++] = NVL_TOKEN_TYPE_NORMAL;
    }
    nvl_vocab_desc_init(&d);
    d.model = "llama";
    d.n_tokens = nt;
    d.tokens = tokens;
    d.scores = scores;
    d.token_types = types;
    assert_int_equal(nvl_vocab_create(&d, &v), 0);

    /* "▁abc": the best first pair is "▁a" (-1.0) over "bc" (-1.5) and "ab" (-3.0); then "▁a"+"b"
     * is no token, "b"+"c" = "bc" merges, then "▁a"+"bc" = "▁abc" (-0.5). */
    tokenize_str(v, "abc", 0, &ids, &n);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 3 + 256 + 7);
    free(ids);

    /* "é" has no piece: bytes C3 A9. */
    tokenize_str(v, "é", 0, &ids, &n);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 3 + 256 + 0); /* "▁" */
    assert_int_equal(ids[1], 3 + 0xc3);
    assert_int_equal(ids[2], 3 + 0xa9);
    assert_int_equal(nvl_vocab_detokenize_alloc(v, ids, n, 0, &text, &len), 0);
    assert_string_equal(text, "é");
    free(text);
    free(ids);
    nvl_vocab_destroy(v);

    /* Bad descriptions are refused. */
    d.model = "t5";
    assert_int_equal(nvl_vocab_create(&d, &v), -EINVAL);
    d.model = "llama";
    tokens[5] = "<unk>";
    assert_int_equal(nvl_vocab_create(&d, &v), -EINVAL); /* duplicate */
    tokens[5] = bytes[2];
    d.bos = (int32_t)nt;
    assert_int_equal(nvl_vocab_create(&d, &v), -EINVAL); /* BOS outside the vocab */
}

/* A hand-built byte-level BPE vocab: merges apply in rank order, not in text order. */
static void test_bpe_handmade(void **state)
{
    static const char *const merges[] = {"b c", "a b", "a bc", "Ġ a"};
    const char *tokens[256 + 4];
    char chars[256][4];
    struct nvl_vocab_desc d;
    struct nvl_vocab *v;
    int32_t *ids;
    size_t n;
    uint32_t nt = 0;

    (void)state;
    /* The 256 byte-level characters in byte order, then the merge results. */
    for (int b = 0; b < 256; b++) {
        uint32_t cpt;

        if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff))
            cpt = (uint32_t)b;
        else if (b <= 0x20)
            cpt = 0x100u + (uint32_t)b;
        else if (b <= 0xa0)
            cpt = 0x121u + (uint32_t)(b - 0x7f);
        else
            cpt = 0x143;
        if (cpt < 0x80) {
            chars[b][0] = (char)cpt;
            chars[b][1] = '\0';
        } else {
            chars[b][0] = (char)(0xc0 | (cpt >> 6));
            chars[b][1] = (char)(0x80 | (cpt & 0x3f));
            chars[b][2] = '\0';
        }
        tokens[nt++] = chars[b];
    }
    tokens[nt++] = "bc";
    tokens[nt++] = "ab";
    tokens[nt++] = "abc";
    tokens[nt++] = "Ġa";
    nvl_vocab_desc_init(&d);
    d.model = "gpt2";
    d.pre = "gpt-2";
    d.n_tokens = nt;
    d.tokens = tokens;
    d.n_merges = 4;
    d.merges = merges;
    assert_int_equal(nvl_vocab_create(&d, &v), 0);

    /* "abc": "b c" (rank 0) before "a b" (rank 1), then "a bc" (rank 2). */
    tokenize_str(v, "abc", 0, &ids, &n);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 256 + 2);
    free(ids);
    /* " ab": GPT-2 keeps the space with the word; "Ġ a" (rank 3) loses to "a b" (rank 1). */
    tokenize_str(v, " ab", 0, &ids, &n);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], ' ' + 0);
    assert_int_equal(ids[1], 256 + 1);
    free(ids);
    nvl_vocab_destroy(v);

    d.pre = "no-such-pre";
    assert_int_equal(nvl_vocab_create(&d, &v), -EINVAL);
}

/* SmolLM2-135M-Instruct (the default model, when scripts/fetch-model.sh has cached it): a
 * "smollm" BPE vocab without BOS whose turns end with <|im_end|>. */
static void test_smollm2(void **state)
{
    const char *src = getenv("NVL_SOURCE_DIR");
    int32_t im_start, im_end, endoftext, *ids;
    struct nvl_gguf *g = NULL;
    struct nvl_vocab *v;
    char path[1024], err[256];
    size_t n;

    (void)state;
    snprintf(path, sizeof(path), "%s/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf",
             src ? src : ".");
    if (nvl_gguf_open(path, &g, err, sizeof(err)))
        skip();
    assert_int_equal(nvl_vocab_load_gguf(g, &v), 0);
    nvl_gguf_close(g);
    assert_string_equal(nvl_vocab_pre_name(v), "smollm");
    im_start = nvl_vocab_find_token(v, "<|im_start|>", 12);
    im_end = nvl_vocab_find_token(v, "<|im_end|>", 10);
    endoftext = nvl_vocab_find_token(v, "<|endoftext|>", 13);
    assert_int_not_equal(im_end, NVL_TOKEN_NULL);
    assert_false(nvl_vocab_add_bos(v));
    assert_int_equal(nvl_vocab_eot(v), im_end);
    assert_true(nvl_vocab_is_eog(v, im_end));
    assert_true(nvl_vocab_is_eog(v, endoftext));
    assert_false(nvl_vocab_is_eog(v, im_start));

    tokenize_str(v, "<|im_start|>user\nHi<|im_end|>\n",
                 NVL_TOKENIZE_ADD_SPECIAL | NVL_TOKENIZE_PARSE_SPECIAL, &ids, &n);
    assert_true(n >= 4);
    assert_int_equal(ids[0], im_start); /* no BOS in front */
    assert_int_equal(ids[n - 2], im_end);
    assert_int_equal(ids[n - 1], nvl_vocab_nl(v));
    free(ids);
    nvl_vocab_destroy(v);
}

/* Writes a vocab-only GGUF with the given pieces left out or broken, and loads it. */
enum broken {
    BROKEN_NONE,
    BROKEN_NO_MODEL,
    BROKEN_NO_TOKENS,
    BROKEN_TOKENS_NOT_STRINGS,
    BROKEN_SHORT_SCORES,
    BROKEN_TYPES_NOT_INT32,
    BROKEN_NO_MERGES,
    BROKEN_BOS_OUT_OF_RANGE,
    BROKEN_PRE_UNKNOWN,
};

static int load_broken(enum broken what, struct nvl_vocab **v)
{
    static const char *const tokens[] = {"a", "b", "ab", "<s>", "</s>"};
    static const char *const merges[] = {"a b"};
    const float scores[5] = {0};
    const int32_t types[5] = {1, 1, 1, 3, 3};
    const int32_t not_strings[5] = {0};
    struct nvl_gguf_writer *w;
    struct nvl_gguf *g = NULL;
    char path[] = "/tmp/nvl_test_vocab_XXXXXX", err[256];
    int fd, rc;

    fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(nvl_gguf_writer_create(&w), 0);
    if (what != BROKEN_NO_MODEL)
        assert_int_equal(nvl_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2"), 0);
    assert_int_equal(nvl_gguf_writer_set_str(w, "tokenizer.ggml.pre",
                                             what == BROKEN_PRE_UNKNOWN ? "nope" : "gpt-2"),
                     0);
    if (what == BROKEN_TOKENS_NOT_STRINGS)
        assert_int_equal(nvl_gguf_writer_set_arr(w, "tokenizer.ggml.tokens", NVL_GGUF_TYPE_INT32,
                                                 not_strings, 5),
                         0);
    else if (what != BROKEN_NO_TOKENS)
        assert_int_equal(nvl_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", tokens, NULL, 5),
                         0);
    assert_int_equal(nvl_gguf_writer_set_arr(w, "tokenizer.ggml.scores", NVL_GGUF_TYPE_FLOAT32,
                                             scores, what == BROKEN_SHORT_SCORES ? 4 : 5),
                     0);
    assert_int_equal(nvl_gguf_writer_set_arr(w, "tokenizer.ggml.token_type",
                                             what == BROKEN_TYPES_NOT_INT32 ? NVL_GGUF_TYPE_FLOAT32
                                                                            : NVL_GGUF_TYPE_INT32,
                                             types, 5),
                     0);
    if (what != BROKEN_NO_MERGES)
        assert_int_equal(nvl_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, NULL, 1),
                         0);
    assert_int_equal(nvl_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id",
                                             what == BROKEN_BOS_OUT_OF_RANGE ? 0xffffffffu : 3),
                     0);
    assert_int_equal(nvl_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 4), 0);
    assert_int_equal(nvl_gguf_writer_write_file(w, path, err, sizeof(err)), 0);
    nvl_gguf_writer_destroy(w);

    assert_int_equal(nvl_gguf_open(path, &g, err, sizeof(err)), 0);
    unlink(path);
    rc = nvl_vocab_load_gguf(g, v);
    nvl_gguf_close(g);
    return rc;
}

static void test_gguf_errors(void **state)
{
    struct nvl_vocab *v = NULL;
    int32_t *ids;
    size_t n;

    (void)state;
    assert_int_equal(load_broken(BROKEN_NONE, &v), 0);
    assert_int_equal(nvl_vocab_bos(v), 3);
    tokenize_str(v, "ab<s>", NVL_TOKENIZE_PARSE_SPECIAL, &ids, &n);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 2);
    assert_int_equal(ids[1], 3);
    free(ids);
    nvl_vocab_destroy(v);

    assert_int_equal(load_broken(BROKEN_NO_MODEL, &v), -ENOENT);
    assert_int_equal(load_broken(BROKEN_NO_TOKENS, &v), -ENOENT);
    assert_int_equal(load_broken(BROKEN_TOKENS_NOT_STRINGS, &v), -EINVAL);
    assert_int_equal(load_broken(BROKEN_SHORT_SCORES, &v), -EINVAL);
    assert_int_equal(load_broken(BROKEN_TYPES_NOT_INT32, &v), -EINVAL);
    assert_int_equal(load_broken(BROKEN_NO_MERGES, &v), -EINVAL);
    assert_int_equal(load_broken(BROKEN_PRE_UNKNOWN, &v), -EINVAL);
    assert_null(v);

    /* An out-of-range id (0xffffffff is "none" in some converters) keeps the default, 11 for
     * BPE, which is itself outside this 5-token vocab: no BOS. */
    assert_int_equal(load_broken(BROKEN_BOS_OUT_OF_RANGE, &v), 0);
    assert_int_equal(nvl_vocab_bos(v), NVL_TOKEN_NULL);
    nvl_vocab_destroy(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_llama_spm),
        cmocka_unit_test(test_vectors_gpt2),
        cmocka_unit_test(test_vectors_llama_bpe),
        cmocka_unit_test(test_stories260k),
        cmocka_unit_test(test_special_llama_bpe),
        cmocka_unit_test(test_special_spm),
        cmocka_unit_test(test_gpt2_cleanup_and_errors),
        cmocka_unit_test(test_spm_handmade),
        cmocka_unit_test(test_bpe_handmade),
        cmocka_unit_test(test_smollm2),
        cmocka_unit_test(test_gguf_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
