/* Chat templates: family detection by distinctive substrings and the families' formats, written
 * out from the reference Jinja templates named beside each formatter. */
#include "nvl_model/chat.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct nvl_chat_template {
    enum nvl_chat_family family;
    char *default_system; /* system text the template inserts when there is none, or NULL */
};

static const char *const chat_family_names[] = {
    [NVL_CHAT_FAMILY_CHATML] = "chatml",
    [NVL_CHAT_FAMILY_LLAMA2] = "llama2",
    [NVL_CHAT_FAMILY_LLAMA3] = "llama3",
    [NVL_CHAT_FAMILY_ZEPHYR] = "zephyr",
};

const char *nvl_chat_family_name(enum nvl_chat_family family)
{
    if ((unsigned)family >= sizeof(chat_family_names) / sizeof(chat_family_names[0]))
        return "unknown";
    return chat_family_names[family];
}

/* A growable string. `failed` latches the first allocation failure so callers check once. */
struct chat_buf {
    char *s;
    size_t len, cap;
    int failed;
};

static void buf_append_n(struct chat_buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->failed = -ENOMEM;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void buf_append(struct chat_buf *b, const char *s)
{
    buf_append_n(b, s, strlen(s));
}

/* Jinja's `| trim` and Python's str.strip(): drops leading and trailing whitespace. */
static void buf_append_trimmed(struct chat_buf *b, const char *s)
{
    static const char ws[] = " \t\n\r\f\v";
    size_t n = strlen(s);
    while (n && strchr(ws, s[0])) {
        s++;
        n--;
    }
    while (n && strchr(ws, s[n - 1]))
        n--;
    buf_append_n(b, s, n);
}

/* SmolLM2's template starts a conversation without a system message with
 *   {% if loop.first and messages[0]['role'] != 'system' %}
 *   {{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, ...<|im_end|>\n' }}
 * Returns a copy of that text (Jinja string escapes undone), NULL when there is none, or sets
 * *err on allocation failure. */
static char *chatml_default_system(const char *jinja, int *err)
{
    static const char head[] = "<|im_start|>system";
    if (!strstr(jinja, "!= 'system'") && !strstr(jinja, "!= \"system\""))
        return NULL;
    const char *p = strstr(jinja, head);
    if (!p)
        return NULL;
    p += sizeof(head) - 1;
    if (p[0] == '\n')
        p += 1;
    else if (p[0] == '\\' && p[1] == 'n')
        p += 2;
    else
        return NULL;
    const char *end = strstr(p, "<|im_end|>");
    /* The text must be a literal: a Jinja expression there means the system text is not fixed. */
    if (!end || memchr(p, '{', (size_t)(end - p)) || memchr(p, '+', (size_t)(end - p)))
        return NULL;
    char *s = malloc((size_t)(end - p) + 1);
    if (!s) {
        *err = -ENOMEM;
        return NULL;
    }
    size_t n = 0;
    for (; p < end; p++) {
        if (p[0] == '\\' && p + 1 < end) {
            p++;
            s[n++] = p[0] == 'n' ? '\n' : p[0] == 't' ? '\t' : p[0];
        } else {
            s[n++] = p[0];
        }
    }
    s[n] = '\0';
    return s;
}

int nvl_chat_template_create(const char *jinja, struct nvl_chat_template **out)
{
    *out = NULL;
    if (!jinja)
        return -EINVAL;

    enum nvl_chat_family family;
    /* Checked from the most to the least distinctive marker: a llama3 template never contains
     * <|im_start|>, but a zephyr-like template could mention [INST] in a comment. */
    if (strstr(jinja, "<|im_start|>"))
        family = NVL_CHAT_FAMILY_CHATML;
    else if (strstr(jinja, "<|start_header_id|>") && strstr(jinja, "<|eot_id|>"))
        family = NVL_CHAT_FAMILY_LLAMA3;
    else if (strstr(jinja, "[INST]"))
        family = NVL_CHAT_FAMILY_LLAMA2;
    else if (strstr(jinja, "<|user|>") && strstr(jinja, "<|assistant|>"))
        family = NVL_CHAT_FAMILY_ZEPHYR;
    else
        return -ENOTSUP;

    struct nvl_chat_template *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->family = family;
    if (family == NVL_CHAT_FAMILY_CHATML) {
        int err = 0;
        t->default_system = chatml_default_system(jinja, &err);
        if (err) {
            free(t);
            return err;
        }
    }
    *out = t;
    return 0;
}

int nvl_chat_template_create_named(const char *name, struct nvl_chat_template **out)
{
    *out = NULL;
    for (size_t i = 0; i < sizeof(chat_family_names) / sizeof(chat_family_names[0]); i++) {
        if (name && strcmp(name, chat_family_names[i]) == 0) {
            struct nvl_chat_template *t = calloc(1, sizeof(*t));
            if (!t)
                return -ENOMEM;
            t->family = (enum nvl_chat_family)i;
            *out = t;
            return 0;
        }
    }
    return -ENOTSUP;
}

void nvl_chat_template_destroy(struct nvl_chat_template *tmpl)
{
    if (!tmpl)
        return;
    free(tmpl->default_system);
    free(tmpl);
}

enum nvl_chat_family nvl_chat_template_family(const struct nvl_chat_template *tmpl)
{
    return tmpl->family;
}

/* ChatML as in SmolLM2-Instruct's template:
 *   {{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}
 *   {% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %} */
static void format_chatml(const struct nvl_chat_template *t, const struct nvl_chat_message *m,
                          size_t n, bool add_assistant, struct chat_buf *b)
{
    if (t->default_system && (n == 0 || strcmp(m[0].role, "system") != 0)) {
        buf_append(b, "<|im_start|>system\n");
        buf_append(b, t->default_system);
        buf_append(b, "<|im_end|>\n");
    }
    for (size_t i = 0; i < n; i++) {
        buf_append(b, "<|im_start|>");
        buf_append(b, m[i].role);
        buf_append(b, "\n");
        buf_append(b, m[i].content);
        buf_append(b, "<|im_end|>\n");
    }
    if (add_assistant)
        buf_append(b, "<|im_start|>assistant\n");
}

/* Llama 3 Instruct:
 *   '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim
 *   + '<|eot_id|>', with bos_token before the first message (left to the tokenizer here), and
 *   '<|start_header_id|>assistant<|end_header_id|>\n\n' as the generation prompt. */
static void format_llama3(const struct nvl_chat_message *m, size_t n, bool add_assistant,
                          struct chat_buf *b)
{
    for (size_t i = 0; i < n; i++) {
        buf_append(b, "<|start_header_id|>");
        buf_append(b, m[i].role);
        buf_append(b, "<|end_header_id|>\n\n");
        buf_append_trimmed(b, m[i].content);
        buf_append(b, "<|eot_id|>");
    }
    if (add_assistant)
        buf_append(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* Llama 2 chat (Meta's template): a leading system message is folded into the first user turn as
 * '<<SYS>>\n' + system + '\n<</SYS>>\n\n'; a user turn is bos + '[INST] ' + content.strip() +
 * ' [/INST]', an assistant turn ' ' + content.strip() + ' ' + eos. The first bos is the
 * tokenizer's. The template has no generation prompt: the reply follows '[/INST]'. */
static void format_llama2(const struct nvl_chat_message *m, size_t n, struct chat_buf *b)
{
    const char *system = NULL;
    size_t i = 0;
    if (n && strcmp(m[0].role, "system") == 0) {
        system = m[0].content;
        i = 1;
    }
    bool first = true;
    for (; i < n; i++) {
        if (strcmp(m[i].role, "assistant") == 0) {
            buf_append(b, " ");
            buf_append_trimmed(b, m[i].content);
            buf_append(b, " </s>");
        } else {
            buf_append(b, first ? "[INST] " : "<s>[INST] ");
            if (first && system) {
                /* strip() applies to the whole content, so the system text keeps its inner
                 * whitespace and only the ends of the combined string are trimmed. */
                struct chat_buf c = {0};
                buf_append(&c, "<<SYS>>\n");
                buf_append(&c, system);
                buf_append(&c, "\n<</SYS>>\n\n");
                buf_append(&c, m[i].content);
                if (c.failed)
                    b->failed = c.failed;
                else
                    buf_append_trimmed(b, c.s);
                free(c.s);
            } else {
                buf_append_trimmed(b, m[i].content);
            }
            buf_append(b, " [/INST]");
        }
        first = false;
    }
}

/* Zephyr, as in TinyLlama-1.1B-Chat: '<|' + role + '|>\n' + content + eos + '\n' per message and
 * '<|assistant|>\n' as the generation prompt. */
static void format_zephyr(const struct nvl_chat_message *m, size_t n, bool add_assistant,
                          struct chat_buf *b)
{
    for (size_t i = 0; i < n; i++) {
        buf_append(b, "<|");
        buf_append(b, m[i].role);
        buf_append(b, "|>\n");
        buf_append(b, m[i].content);
        buf_append(b, "</s>\n");
    }
    if (add_assistant)
        buf_append(b, "<|assistant|>\n");
}

int nvl_chat_template_apply(const struct nvl_chat_template *tmpl,
                            const struct nvl_chat_message *msgs, size_t n_msgs, bool add_assistant,
                            char **out)
{
    *out = NULL;
    for (size_t i = 0; i < n_msgs; i++)
        if (!msgs[i].role || !msgs[i].content)
            return -EINVAL;

    struct chat_buf b = {0};
    buf_append(&b, "");
    switch (tmpl->family) {
    case NVL_CHAT_FAMILY_CHATML:
        format_chatml(tmpl, msgs, n_msgs, add_assistant, &b);
        break;
    case NVL_CHAT_FAMILY_LLAMA3:
        format_llama3(msgs, n_msgs, add_assistant, &b);
        break;
    case NVL_CHAT_FAMILY_LLAMA2:
        format_llama2(msgs, n_msgs, &b);
        break;
    case NVL_CHAT_FAMILY_ZEPHYR:
        format_zephyr(msgs, n_msgs, add_assistant, &b);
        break;
    }
    if (b.failed) {
        free(b.s);
        return b.failed;
    }
    *out = b.s;
    return 0;
}
