/* SmolLM2-135M-Instruct Q4_1 requantized with `nvgguf quantize` to Q8_0 and Q4_K: top-1
 * agreement with the Q4_1 model over 100 tokens, and a coherent greedy answer from each.
 *
 * Agreement is measured with teacher forcing: the Q4_1 model's 100 greedy tokens are fed to the
 * requantized model in one batch, and at each position its argmax is compared with the token the
 * Q4_1 model chose. The bounds asserted are loose sanity floors (a broken kernel or layout gives
 * near 0%); the measured values are printed and recorded in docs/benchmarks.md.
 *
 * usage: test_llama_requant NVGGUF_BINARY   (skips with 77 when the model is not fetched) */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nvl_model.h"

#define N_TOKENS 100

static const char question[] = "What is the largest ocean on Earth?";

static int fail(const char *msg)
{
    fprintf(stderr, "FAIL: %s\n", msg);
    return 1;
}

/* Runs `nvgguf quantize IN OUT TYPE`. */
static int quantize(const char *nvgguf, const char *in, const char *out, const char *type)
{
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        /* Its per-tensor table would bury the agreement figures in the test log. */
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, STDOUT_FILENO);
        execl(nvgguf, nvgguf, "quantize", "--threads", "2", in, out, type, (char *)NULL);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) < 0)
        return -errno;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

struct loaded {
    struct nvl_llama_model *model;
    struct nvl_vocab *vocab;
    struct nvl_session *session;
};

static int open_model(const char *path, struct loaded *l)
{
    char err[256];
    struct nvl_session_params p;
    nvl_session_params_default(&p);
    p.n_ctx = 256;
    p.n_threads = 2;
    if (nvl_llama_load(path, &l->model, err, sizeof(err))) {
        fprintf(stderr, "%s: %s\n", path, err);
        return -1;
    }
    if (nvl_vocab_load_gguf(nvl_llama_gguf(l->model), &l->vocab) ||
        nvl_session_create(l->model, &p, &l->session))
        return -1;
    return 0;
}

static void close_model(struct loaded *l)
{
    nvl_session_destroy(l->session);
    nvl_vocab_destroy(l->vocab);
    nvl_llama_destroy(l->model);
}

static int32_t argmax(const float *l, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (l[i] > l[best])
            best = i;
    return best;
}

/* The chat prompt for the question, tokenized. */
static int32_t *chat_tokens(const struct loaded *l, size_t *n)
{
    const char *jinja = NULL;
    struct nvl_chat_template *t = NULL;
    char *text = NULL;
    int32_t *ids = NULL;
    struct nvl_chat_message msg = {"user", question};
    if (nvl_gguf_get_str(nvl_llama_gguf(l->model), "tokenizer.chat_template", &jinja, NULL) ||
        nvl_chat_template_create(jinja, &t) || nvl_chat_template_apply(t, &msg, 1, true, &text) ||
        nvl_vocab_tokenize_alloc(l->vocab, text, strlen(text),
                                 NVL_TOKENIZE_ADD_SPECIAL | NVL_TOKENIZE_PARSE_SPECIAL, &ids, n))
        ids = NULL;
    free(text);
    nvl_chat_template_destroy(t);
    return ids;
}

/* Greedy: prompt then n tokens (no stop on end of text, so the count is fixed). */
static int greedy(struct loaded *l, const int32_t *prompt, size_t n_prompt, int32_t *out, int n)
{
    const int32_t n_vocab = nvl_llama_hparams(l->model)->n_vocab;
    nvl_session_truncate(l->session, 0);
    if (nvl_session_eval(l->session, prompt, (int32_t)n_prompt, false))
        return -1;
    for (int i = 0; i < n; i++) {
        out[i] = argmax(nvl_session_logits(l->session, -1), n_vocab);
        if (i + 1 < n && nvl_session_eval(l->session, &out[i], 1, false))
            return -1;
    }
    return 0;
}

static void print_text(const struct loaded *l, const char *label, const int32_t *ids, int n)
{
    char *text = NULL;
    size_t len = 0;
    /* Show the answer up to the end of its turn. */
    int shown = 0;
    while (shown < n && !nvl_vocab_is_eog(l->vocab, ids[shown]))
        shown++;
    if (nvl_vocab_detokenize_alloc(l->vocab, ids, (size_t)shown, 0, &text, &len) == 0) {
        printf("%s: %s\n", label, text);
        free(text);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return fail("usage: test_llama_requant NVGGUF_BINARY");
    const char *src = getenv("NVL_SOURCE_DIR");
    char q41[4096];
    snprintf(q41, sizeof(q41), "%s/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf", src ? src : ".");
    if (access(q41, R_OK) != 0) {
        printf("skipped: %s is missing (scripts/fetch-model.sh fetches it)\n", q41);
        return 77;
    }

    struct loaded base = {0};
    if (open_model(q41, &base))
        return fail("cannot open the Q4_1 model");
    size_t n_prompt = 0;
    int32_t *prompt = chat_tokens(&base, &n_prompt);
    if (!prompt)
        return fail("cannot build the chat prompt");
    int32_t *seq = malloc((n_prompt + N_TOKENS) * sizeof(*seq));
    if (!seq)
        return fail("out of memory");
    memcpy(seq, prompt, n_prompt * sizeof(*seq));
    int32_t *ref = seq + n_prompt;
    if (greedy(&base, prompt, n_prompt, ref, N_TOKENS))
        return fail("Q4_1 generation failed");
    print_text(&base, "q4_1", ref, N_TOKENS);

    static const struct {
        const char *type;
        double min_agreement;
    } targets[] = {{"Q8_0", 0.80}, {"Q4_K", 0.50}};
    int status = 0;
    for (size_t t = 0; t < sizeof(targets) / sizeof(targets[0]); t++) {
        char out[256];
        snprintf(out, sizeof(out), "smollm2-requant-%s.gguf", targets[t].type);
        if (quantize(argv[1], q41, out, targets[t].type)) {
            status = fail("nvgguf quantize failed");
            continue;
        }
        struct loaded m = {0};
        if (open_model(out, &m)) {
            status = fail("cannot open the requantized model");
            continue;
        }
        const int32_t n_vocab = nvl_llama_hparams(m.model)->n_vocab;
        /* Teacher forcing: the logits after prompt + ref[0..i) predict ref[i]. */
        int agree = 0;
        if (nvl_session_eval(m.session, seq, (int32_t)(n_prompt + N_TOKENS - 1), true)) {
            status = fail("eval failed");
        } else {
            for (int i = 0; i < N_TOKENS; i++)
                agree += argmax(nvl_session_logits(m.session, (int32_t)n_prompt - 1 + i),
                                n_vocab) == ref[i];
        }
        const double frac = agree / (double)N_TOKENS;
        printf("%s: top-1 agreement with Q4_1 over %d tokens: %d/%d (%.0f%%)\n", targets[t].type,
               N_TOKENS, agree, N_TOKENS, 100.0 * frac);
        if (frac < targets[t].min_agreement)
            status = fail("agreement below the sanity floor");

        int32_t own[48];
        if (greedy(&m, prompt, n_prompt, own, 48) == 0)
            print_text(&m, targets[t].type, own, 48);
        close_model(&m);
        unlink(out);
    }
    free(seq);
    free(prompt);
    close_model(&base);
    return status;
}
