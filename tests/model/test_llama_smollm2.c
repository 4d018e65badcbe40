/* SmolLM2-135M-Instruct (Q4_1, fetched by scripts/fetch-model.sh): the model loads with the
 * shape its card gives, answers short chat questions with the expected word, and gives the same
 * output on every run and with any thread count or batch size. Skipped (77) when the model file
 * has not been fetched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nvl_model.h"

#define MAX_GEN 64

static char model_path[4096];
static struct nvl_llama_model *model;
static struct nvl_vocab *vocab;
static struct nvl_chat_template *tmpl;
static int32_t eog[64];
static int32_t n_eog;

static int setup(void **state)
{
    (void)state;
    char err[256];
    if (nvl_llama_load(model_path, &model, err, sizeof(err))) {
        fprintf(stderr, "load: %s\n", err);
        return -1;
    }
    if (nvl_vocab_load_gguf(nvl_llama_gguf(model), &vocab))
        return -1;
    const char *jinja = NULL;
    if (nvl_gguf_get_str(nvl_llama_gguf(model), "tokenizer.chat_template", &jinja, NULL) ||
        nvl_chat_template_create(jinja, &tmpl))
        return -1;
    for (uint32_t id = 0; id < nvl_vocab_n_tokens(vocab) && n_eog < 64; id++)
        if (nvl_vocab_is_eog(vocab, (int32_t)id))
            eog[n_eog++] = (int32_t)id;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    nvl_chat_template_destroy(tmpl);
    nvl_vocab_destroy(vocab);
    nvl_llama_destroy(model);
    return 0;
}

/* The chat prompt for one user message, as tokens. */
static int32_t *chat_prompt(const char *question, size_t *n)
{
    struct nvl_chat_message msg = {"user", question};
    char *text = NULL;
    assert_int_equal(nvl_chat_template_apply(tmpl, &msg, 1, true, &text), 0);
    int32_t *ids = NULL;
    assert_int_equal(nvl_vocab_tokenize_alloc(vocab, text, strlen(text),
                                              NVL_TOKENIZE_ADD_SPECIAL | NVL_TOKENIZE_PARSE_SPECIAL,
                                              &ids, n),
                     0);
    free(text);
    return ids;
}

struct gen {
    int32_t ids[MAX_GEN];
    int n;
    struct nvl_generate_stats st;
};

static int collect(void *ctx, int32_t token)
{
    struct gen *g = ctx;
    if (g->n < MAX_GEN)
        g->ids[g->n++] = token;
    return 0;
}

static void generate(const int32_t *prompt, size_t n_prompt, int n_threads, int n_batch, float temp,
                     int32_t n_predict, struct gen *out)
{
    struct nvl_session_params p;
    nvl_session_params_default(&p);
    p.n_ctx = 256;
    p.n_threads = n_threads;
    p.n_batch = n_batch;
    struct nvl_session *s = NULL;
    assert_int_equal(nvl_session_create(model, &p, &s), 0);
    struct nvl_sampler_params sp;
    nvl_sampler_params_default(&sp);
    sp.temperature = temp;
    sp.seed = 1234;
    struct nvl_sampler *smp = NULL;
    assert_int_equal(nvl_sampler_create(&sp, nvl_llama_hparams(model)->n_vocab, &smp), 0);
    struct nvl_generate_params gp = {
        .n_predict = n_predict, .eog_tokens = eog, .n_eog_tokens = n_eog};
    memset(out, 0, sizeof(*out));
    assert_int_equal(nvl_generate(s, smp, prompt, (int32_t)n_prompt, &gp, collect, out, &out->st),
                     0);
    nvl_sampler_destroy(smp);
    nvl_session_destroy(s);
}

static void test_hparams(void **state)
{
    (void)state;
    /* SmolLM2-135M's config: 30 layers, hidden 576, 9 heads of which 3 kv heads, intermediate
     * 1536, vocab 49152, rope theta 100000, tied embeddings. */
    const struct nvl_llama_hparams *hp = nvl_llama_hparams(model);
    assert_int_equal(hp->n_layer, 30);
    assert_int_equal(hp->n_embd, 576);
    assert_int_equal(hp->n_head, 9);
    assert_int_equal(hp->n_head_kv, 3);
    assert_int_equal(hp->head_dim, 64);
    assert_int_equal(hp->n_ff, 1536);
    assert_int_equal(hp->n_vocab, 49152);
    assert_true(hp->rope_freq_base == 100000.0f);
    assert_true(nvl_llama_weights(model)->output_tied);
    assert_int_equal(nvl_chat_template_family(tmpl), NVL_CHAT_FAMILY_CHATML);
}

static bool contains_word(const char *text, const char *word)
{
    const size_t n = strlen(word);
    for (const char *p = text; *p; p++)
        if (strncasecmp(p, word, n) == 0)
            return true;
    return false;
}

static void test_chat_answers(void **state)
{
    (void)state;
    /* Questions with a one-word answer that any coherent reply contains. */
    static const struct {
        const char *question, *word;
    } qa[] = {
        {"What is the largest ocean on Earth?", "Pacific"},
        {"What color is the sky on a clear day?", "blue"},
        {"What is the opposite of hot?", "cold"},
    };
    for (size_t i = 0; i < sizeof(qa) / sizeof(qa[0]); i++) {
        size_t n = 0;
        int32_t *prompt = chat_prompt(qa[i].question, &n);
        struct gen g;
        generate(prompt, n, 2, 0, 0.0f, 40, &g);
        char *text = NULL;
        size_t len = 0;
        assert_int_equal(nvl_vocab_detokenize_alloc(vocab, g.ids, (size_t)g.n, 0, &text, &len), 0);
        printf("Q: %s\nA: %s\n", qa[i].question, text);
        assert_true(contains_word(text, qa[i].word));
        /* Basic sanity: several words of printable text, no control tokens leaked. */
        int words = 0;
        for (size_t j = 0; j < len; j++) {
            assert_true(isprint((unsigned char)text[j]) || text[j] == '\n' ||
                        (unsigned char)text[j] >= 0x80);
            words += text[j] == ' ';
        }
        assert_true(words >= 3);
        assert_null(strstr(text, "<|im_"));
        free(text);
        free(prompt);
    }
}

static void test_same_output_any_threads(void **state)
{
    (void)state;
    size_t n = 0;
    int32_t *prompt = chat_prompt("Write one sentence about the sea.", &n);

    /* Prompt logits are bit-identical for any thread count and batch size: every output value
     * is computed by one thread in one fixed order. */
    const int32_t n_vocab = nvl_llama_hparams(model)->n_vocab;
    float *first = malloc(n * (size_t)n_vocab * sizeof(float));
    assert_non_null(first);
    const struct {
        int threads, batch;
    } cfg[] = {{1, 0}, {2, 0}, {3, 0}, {2, 1}, {3, 7}};
    for (size_t c = 0; c < sizeof(cfg) / sizeof(cfg[0]); c++) {
        struct nvl_session_params p;
        nvl_session_params_default(&p);
        p.n_ctx = 128;
        p.n_threads = cfg[c].threads;
        p.n_batch = cfg[c].batch;
        struct nvl_session *s = NULL;
        assert_int_equal(nvl_session_create(model, &p, &s), 0);
        assert_int_equal(nvl_session_eval(s, prompt, (int32_t)n, true), 0);
        for (size_t t = 0; t < n; t++) {
            const float *l = nvl_session_logits(s, (int32_t)t);
            if (c == 0)
                memcpy(first + t * (size_t)n_vocab, l, (size_t)n_vocab * sizeof(float));
            else
                assert_memory_equal(first + t * (size_t)n_vocab, l,
                                    (size_t)n_vocab * sizeof(float));
        }
        nvl_session_destroy(s);
    }
    free(first);

    /* Greedy and seeded sampling give the same tokens on every run and thread count. */
    for (int sampled = 0; sampled < 2; sampled++) {
        struct gen ref, g;
        const float temp = sampled ? 0.8f : 0.0f;
        generate(prompt, n, 1, 0, temp, 24, &ref);
        assert_true(ref.n > 8);
        for (int threads = 2; threads <= 3; threads++) {
            generate(prompt, n, threads, 0, temp, 24, &g);
            assert_int_equal(g.n, ref.n);
            assert_memory_equal(g.ids, ref.ids, (size_t)g.n * sizeof(int32_t));
        }
    }
    free(prompt);
}

int main(void)
{
    const char *src = getenv("NVL_SOURCE_DIR");
    snprintf(model_path, sizeof(model_path), "%s/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf",
             src ? src : ".");
    if (access(model_path, R_OK) != 0) {
        printf("skipped: %s is missing (scripts/fetch-model.sh fetches it)\n", model_path);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hparams),
        cmocka_unit_test(test_chat_answers),
        cmocka_unit_test(test_same_output_any_threads),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
