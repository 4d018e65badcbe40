/* BPE pre-tokenizers. Each tokenizer.ggml.pre name maps to a row of regexes (the ones in the
 * model's tokenizer.json, as llama.cpp b4747 lists them in llm_tokenizer_bpe) and a few flags.
 * The regexes run in PCRE2 with UTF and Unicode properties, so \p{L}, \p{N}, \p{P} and lookahead
 * work as written; adding a pre-tokenizer is adding a row below.
 *
 * Splitting follows llama.cpp's unicode_regex_split: the first regex cuts the text into its
 * matches and the runs between them; each following regex cuts every piece again, seeing only
 * that piece (so a lookahead stops at the piece's end). */
#define PCRE2_CODE_UNIT_WIDTH 8

#include <errno.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "nvl_driver/log.h"
#include "tokenizer_internal.h"

#define PRETOK_MAX_REGEX 5

/* GPT-2's pattern, also the word-level stage of several others. */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
/* Llama 3's pattern with (?i:...) spelled out, as llama.cpp writes it. */
#define RE_LLAMA3                                                                                  \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"     \
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* Qwen 2: Llama 3's with single digits. */
#define RE_QWEN2                                                                                   \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"     \
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_BLOOM " ?[^(\\s|.,!?…。，、।۔،)]+"

enum pretok_kind {
    PRETOK_DEFAULT,
    PRETOK_GPT2,
    PRETOK_LLAMA3,
    PRETOK_STARCODER, /* digits split one by one, then GPT-2 */
    PRETOK_QWEN2,
    PRETOK_FALCON,
    PRETOK_DEEPSEEK_CODER,
    PRETOK_BLOOM,
    PRETOK_VIKING,
    PRETOK_KIND_COUNT,
};

static const char *const pretok_regexes[PRETOK_KIND_COUNT][PRETOK_MAX_REGEX] = {
    [PRETOK_DEFAULT] = {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"},
    [PRETOK_GPT2] = {RE_GPT2},
    [PRETOK_LLAMA3] = {RE_LLAMA3},
    [PRETOK_STARCODER] = {"\\p{N}", RE_GPT2},
    [PRETOK_QWEN2] = {RE_QWEN2},
    [PRETOK_FALCON] = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"},
    [PRETOK_DEEPSEEK_CODER] = {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+",
                               "\\p{N}"},
    [PRETOK_BLOOM] = {RE_BLOOM},
    [PRETOK_VIKING] = {RE_BLOOM, "\\p{N}"},
};

/* tokenizer.ggml.pre names, as llama.cpp b4747 maps them. clean_spaces is llama.cpp's BPE
 * default (true) unless the model's tokenizer config turns it off. */
static const struct pretok_name {
    const char *name;
    enum pretok_kind kind;
    bool clean_spaces;
    bool ignore_merges;
    bool add_bos;
} pretok_names[] = {
    {"default", PRETOK_DEFAULT, true, false, false},
    {"llama3", PRETOK_LLAMA3, true, true, true},
    {"llama-v3", PRETOK_LLAMA3, true, true, true},
    {"llama-bpe", PRETOK_LLAMA3, true, true, true},
    {"falcon3", PRETOK_LLAMA3, true, true, true},
    {"dbrx", PRETOK_LLAMA3, true, false, false},
    {"smaug-bpe", PRETOK_LLAMA3, true, false, false},
    {"gpt-2", PRETOK_GPT2, true, false, false},
    {"phi-2", PRETOK_GPT2, true, false, false},
    {"jina-es", PRETOK_GPT2, true, false, false},
    {"jina-de", PRETOK_GPT2, true, false, false},
    {"jina-v2-es", PRETOK_GPT2, true, false, false},
    {"jina-v2-de", PRETOK_GPT2, true, false, false},
    {"gigachat", PRETOK_GPT2, true, false, false},
    {"mpt", PRETOK_GPT2, true, false, false},
    {"olmo", PRETOK_GPT2, true, false, false},
    {"jais", PRETOK_GPT2, true, false, false},
    {"starcoder", PRETOK_STARCODER, true, false, false},
    {"refact", PRETOK_STARCODER, true, false, false},
    {"codeshell", PRETOK_STARCODER, true, false, false},
    {"exaone", PRETOK_STARCODER, true, false, false},
    {"minerva-7b", PRETOK_STARCODER, true, false, false},
    {"command-r", PRETOK_STARCODER, false, false, false},
    {"smollm", PRETOK_STARCODER, false, false, false},
    {"qwen2", PRETOK_QWEN2, false, false, false},
    {"deepseek-r1-qwen", PRETOK_QWEN2, false, false, false},
    {"stablelm2", PRETOK_QWEN2, true, false, false},
    {"megrez", PRETOK_QWEN2, true, false, false},
    {"falcon", PRETOK_FALCON, true, false, false},
    {"deepseek-coder", PRETOK_DEEPSEEK_CODER, false, false, false},
    {"poro-chat", PRETOK_BLOOM, false, false, false},
    {"bloom", PRETOK_BLOOM, true, false, false},
    {"gpt3-finnish", PRETOK_BLOOM, true, false, false},
    {"viking", PRETOK_VIKING, false, false, false},
};

struct nvl_pretok {
    const char *name;
    uint32_t n_regex;
    pcre2_code *re[PRETOK_MAX_REGEX];
};

/* Rewrites \s and \S as the Unicode White_Space property. PCRE2's \s with UCP also matches
 * U+180E, which is not White_Space; llama.cpp's \s is exactly White_Space. */
static char *rewrite_whitespace(const char *re)
{
    size_t n = strlen(re), o = 0;
    char *out = malloc(n * 6 + 1); /* "\s" (2 bytes) grows to "\p{WSpace}" (10) */

    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (re[i] == '\\' && i + 1 < n) {
            if (re[i + 1] == 's' || re[i + 1] == 'S') {
                memcpy(out + o, re[i + 1] == 's' ? "\\p{WSpace}" : "\\P{WSpace}", 10);
                o += 10;
            } else {
                out[o++] = re[i];
                out[o++] = re[i + 1];
            }
            i++;
            continue;
        }
        out[o++] = re[i];
    }
    out[o] = '\0';
    return out;
}

int nvl__pretok_create(const char *name, struct nvl_pretok **out, struct nvl_pretok_flags *flags)
{
    const struct pretok_name *row = NULL;
    struct nvl_pretok *p;
    int rc = 0;

    *out = NULL;
    if (!name || !*name) {
        nvl_log_warn(NVL_TOK_LOG, "BPE vocab without tokenizer.ggml.pre; using llama.cpp's "
                                  "'default' pre-tokenizer (the model may tokenize poorly)");
        name = "default";
    }
    for (size_t i = 0; i < sizeof(pretok_names) / sizeof(pretok_names[0]); i++) {
        if (!strcmp(pretok_names[i].name, name)) {
            row = &pretok_names[i];
            break;
        }
    }
    if (!row) {
        nvl_log_error(NVL_TOK_LOG, "unknown pre-tokenizer '%s' (tokenizer.ggml.pre)", name);
        return -EINVAL;
    }

    p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->name = row->name;
    for (uint32_t i = 0; i < PRETOK_MAX_REGEX && pretok_regexes[row->kind][i]; i++) {
        char *re = rewrite_whitespace(pretok_regexes[row->kind][i]);
        PCRE2_SIZE err_off;
        int err;

        if (!re) {
            rc = -ENOMEM;
            goto err_destroy;
        }
        p->re[i] = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err,
                                 &err_off, NULL);
        if (!p->re[i]) {
            PCRE2_UCHAR msg[128];

            pcre2_get_error_message(err, msg, sizeof(msg));
            nvl_log_error(NVL_TOK_LOG, "pre-tokenizer '%s' regex %u: %s at offset %zu", name, i,
                          (const char *)msg, (size_t)err_off);
            free(re);
            rc = -EINVAL;
            goto err_destroy;
        }
        free(re);
        /* JIT is an optimisation only: where it is unavailable the interpreter runs. */
        (void)pcre2_jit_compile(p->re[i], PCRE2_JIT_COMPLETE);
        p->n_regex++;
    }
    flags->clean_spaces = row->clean_spaces;
    flags->ignore_merges = row->ignore_merges;
    flags->add_bos = row->add_bos;
    *out = p;
    return 0;

err_destroy:
    nvl__pretok_destroy(p);
    return rc;
}

void nvl__pretok_destroy(struct nvl_pretok *p)
{
    if (!p)
        return;
    for (uint32_t i = 0; i < PRETOK_MAX_REGEX; i++)
        pcre2_code_free(p->re[i]);
    free(p);
}

/* Cuts text[off, off + len) with one regex, appending the pieces to out. */
static int split_one(const pcre2_code *re, pcre2_match_data *md, const char *text, size_t off,
                     size_t len, struct nvl_tok_spans *out)
{
    const PCRE2_SPTR subject = (PCRE2_SPTR)(text + off);
    size_t pos = 0, start = 0; /* search position; start of the text not yet emitted */
    int rc;

    while (pos < len) {
        PCRE2_SIZE *ov;
        int m = pcre2_match(re, subject, len, pos, PCRE2_NO_UTF_CHECK, md, NULL);

        if (m == PCRE2_ERROR_NOMATCH)
            break;
        if (m < 0) {
            PCRE2_UCHAR msg[128];

            pcre2_get_error_message(m, msg, sizeof(msg));
            nvl_log_error(NVL_TOK_LOG, "pre-tokenizer regex failed: %s", (const char *)msg);
            return m == PCRE2_ERROR_NOMEMORY ? -ENOMEM : -EINVAL;
        }
        ov = pcre2_get_ovector_pointer(md);
        if (ov[1] == ov[0]) {
            /* An empty match emits nothing; step over one character and search on. */
            pos = ov[1] + nvl__utf8_len(subject[ov[1] < len ? ov[1] : len - 1]);
            continue;
        }
        if (ov[0] > start) {
            rc = nvl__tok_spans_push(out, off + start, ov[0] - start);
            if (rc)
                return rc;
        }
        rc = nvl__tok_spans_push(out, off + ov[0], ov[1] - ov[0]);
        if (rc)
            return rc;
        start = pos = ov[1];
    }
    if (start < len)
        return nvl__tok_spans_push(out, off + start, len - start);
    return 0;
}

int nvl__pretok_split(const struct nvl_pretok *p, const char *text, size_t len,
                      struct nvl_tok_spans *out)
{
    struct nvl_tok_spans a = {0}, b = {0};
    pcre2_match_data *md = NULL;
    int rc = 0;

    if (!len)
        return 0;
    rc = nvl__tok_spans_push(&a, 0, len);
    for (uint32_t r = 0; r < p->n_regex && !rc; r++) {
        struct nvl_tok_spans t;

        pcre2_match_data_free(md);
        md = pcre2_match_data_create_from_pattern(p->re[r], NULL);
        if (!md) {
            rc = -ENOMEM;
            break;
        }
        b.n = 0;
        for (size_t i = 0; i < a.n && !rc; i++)
            rc = split_one(p->re[r], md, text, a.v[2 * i], a.v[2 * i + 1], &b);
        t = a;
        a = b;
        b = t;
    }
    for (size_t i = 0; i < a.n && !rc; i++)
        rc = nvl__tok_spans_push(out, a.v[2 * i], a.v[2 * i + 1]);
    pcre2_match_data_free(md);
    nvl__tok_spans_free(&a);
    nvl__tok_spans_free(&b);
    return rc;
}
