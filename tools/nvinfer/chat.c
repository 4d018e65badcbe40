/* nvinfer interactive chat: read a line, format the whole conversation with the model's chat
 * template, evaluate only what the KV cache does not hold yet, stream the reply. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nvinfer.h"

struct conversation {
    struct nvl_chat_message *msgs;
    size_t n, cap;
};

static int conv_add(struct conversation *c, const char *role, const char *content, size_t len)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        struct nvl_chat_message *m = realloc(c->msgs, cap * sizeof(*m));
        if (!m)
            return -1;
        c->msgs = m;
        c->cap = cap;
    }
    char *copy = strndup(content, len);
    if (!copy)
        return -1;
    c->msgs[c->n++] = (struct nvl_chat_message){.role = role, .content = copy};
    return 0;
}

/* Drops messages from index `keep` on. */
static void conv_truncate(struct conversation *c, size_t keep)
{
    while (c->n > keep)
        free((char *)c->msgs[--c->n].content);
}

struct reply {
    const struct nvl_vocab *vocab;
    int32_t *ids;
    size_t n, cap;
};

static int reply_token(void *ctx, int32_t token)
{
    struct reply *r = ctx;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 256;
        int32_t *ids = realloc(r->ids, cap * sizeof(*ids));
        if (!ids)
            return 1;
        r->ids = ids;
        r->cap = cap;
    }
    r->ids[r->n++] = token;
    size_t len = 0;
    const char *piece = nvl_vocab_token_piece(r->vocab, token, false, &len);
    if (piece)
        fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return 0;
}

/* One assistant turn for the conversation so far. Returns 0, or -1 on a fatal error. */
static int chat_turn(const struct nvinfer_opts *o, struct nvinfer_model *m, struct nvl_sampler *smp,
                     struct conversation *conv)
{
    char *text = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    struct reply r = {.vocab = m->vocab};
    int ret = -1;

    if (nvl_chat_template_apply(m->tmpl, conv->msgs, conv->n, true, &text))
        goto out;
    if (nvl_vocab_tokenize_alloc(m->vocab, text, strlen(text),
                                 NVL_TOKENIZE_ADD_SPECIAL | NVL_TOKENIZE_PARSE_SPECIAL, &ids, &n))
        goto out;

    /* Reuse the cached prefix; at least one token must be evaluated to get fresh logits. */
    const int32_t *cached = nvl_session_tokens(m->session);
    size_t prefix = 0;
    while (prefix < n && prefix < (size_t)nvl_session_n_past(m->session) &&
           cached[prefix] == ids[prefix])
        prefix++;
    if (prefix == n)
        prefix--;
    nvl_session_truncate(m->session, (int32_t)prefix);
    if ((int64_t)n >= nvl_session_n_ctx(m->session)) {
        fprintf(stderr, "\n[the conversation no longer fits the context of %d tokens: /reset]\n",
                nvl_session_n_ctx(m->session));
        conv_truncate(conv, conv->n - 1);
        ret = 0;
        goto out;
    }

    struct nvl_generate_params gp = {
        .n_predict = o->n_predict,
        .eog_tokens = m->eog,
        .n_eog_tokens = m->n_eog,
    };
    struct nvl_generate_stats st;
    int rc = nvl_generate(m->session, smp, ids + prefix, (int32_t)(n - prefix), &gp, reply_token,
                          &r, &st);
    fputc('\n', stdout);
    fflush(stdout);
    if (rc) {
        fprintf(stderr, "nvinfer: generation failed: %s\n", nvl_strerror(rc));
        goto out;
    }
    if (st.stop == NVL_STOP_CONTEXT)
        fprintf(stderr, "[context full: /reset starts over]\n");
    if (o->verbose)
        fprintf(stderr, "[%zu tokens cached, %d evaluated, %d generated at %.1f tok/s]\n", prefix,
                st.n_prompt, st.n_generated,
                st.generate_ns ? st.n_generated / (st.generate_ns / 1e9) : 0.0);

    char *reply = NULL;
    size_t len = 0;
    if (nvl_vocab_detokenize_alloc(m->vocab, r.ids, r.n, 0, &reply, &len))
        goto out;
    ret = conv_add(conv, "assistant", reply ? reply : "", len);
    free(reply);
out:
    free(r.ids);
    free(ids);
    free(text);
    return ret;
}

int nvinfer_run_chat(const struct nvinfer_opts *o, struct nvinfer_model *m)
{
    if (!m->tmpl) {
        fprintf(stderr,
                "nvinfer: %s has no chat template nvinfer knows; pick one with "
                "--chat-template chatml|llama2|llama3|zephyr\n",
                o->model);
        return 2;
    }
    struct nvl_sampler *smp = NULL;
    if (nvl_sampler_create(&o->sampling, nvl_llama_hparams(m->model)->n_vocab, &smp)) {
        fprintf(stderr, "nvinfer: bad sampling options\n");
        return 2;
    }
    struct conversation conv = {0};
    size_t n_fixed = 0;
    int status = 0;
    if (o->system) {
        if (conv_add(&conv, "system", o->system, strlen(o->system)))
            goto err_oom;
        n_fixed = 1;
    }
    const bool tty = isatty(STDIN_FILENO);
    if (tty)
        fprintf(stderr, "nvinfer chat: type a message; /reset starts over, /exit or Ctrl-D ends\n");

    const char *first = o->prompt;
    char *line = NULL;
    size_t line_cap = 0;
    for (;;) {
        const char *msg;
        size_t len;
        if (first) {
            msg = first;
            len = strlen(first);
            first = NULL;
            printf("> %s\n", msg);
        } else {
            if (tty) {
                fputs("> ", stdout);
                fflush(stdout);
            }
            ssize_t got = getline(&line, &line_cap, stdin);
            if (got < 0)
                break;
            msg = line;
            len = (size_t)got;
            while (len && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
                len--;
        }
        if (len == 0)
            continue;
        if ((len == 5 && memcmp(msg, "/exit", 5) == 0) ||
            (len == 5 && memcmp(msg, "/quit", 5) == 0))
            break;
        if (len == 6 && memcmp(msg, "/reset", 6) == 0) {
            conv_truncate(&conv, n_fixed);
            nvl_session_truncate(m->session, 0);
            nvl_sampler_reset(smp);
            continue;
        }
        /* Piped input is not echoed by a terminal: show what is being answered. */
        if (!tty && msg != o->prompt)
            printf("> %.*s\n", (int)len, msg);
        fflush(stdout);
        if (conv_add(&conv, "user", msg, len))
            goto err_oom;
        if (chat_turn(o, m, smp, &conv)) {
            status = 1;
            break;
        }
    }
    free(line);
    conv_truncate(&conv, 0);
    free(conv.msgs);
    nvl_sampler_destroy(smp);
    return status;

err_oom:
    fprintf(stderr, "nvinfer: out of memory\n");
    conv_truncate(&conv, 0);
    free(conv.msgs);
    nvl_sampler_destroy(smp);
    return 1;
}
