/* nvinfer serve: the OpenAI and Ollama wire formats. Requests are parsed and checked here into a
 * job (prompt tokens, sampling, stop strings); responses, stream chunks and errors are written
 * here. Everything that reaches a client as JSON goes through cJSON, and all generated text is
 * made valid UTF-8 first.
 *
 * OpenAI: https://platform.openai.com/docs/api-reference/chat and .../completions
 * Ollama:  https://github.com/ollama/ollama/blob/main/docs/api.md */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "serve.h"

/* Limits on what a request may ask for. */
enum {
    MAX_STOP_STRINGS = 16,
    MAX_STOP_LEN = 512,
    MAX_PREDICT = 1 << 20,
};

static int bad(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(char *err, size_t err_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* cJSON's parser records the place of the last error in a global, which concurrent connection
 * threads would write at once; parsing is serialized (it takes microseconds, the bodies are
 * small). Printing touches no global state. */
static pthread_mutex_t parse_mu = PTHREAD_MUTEX_INITIALIZER;

static cJSON *parse_json(const char *body, size_t len, size_t *error_at)
{
    const char *end = NULL;
    pthread_mutex_lock(&parse_mu);
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, false);
    pthread_mutex_unlock(&parse_mu);
    if (!root && error_at)
        *error_at = end && end >= body ? (size_t)(end - body) : 0;
    return root;
}

/* ------------------------------------------------------------------------------------------ */
/* Reading fields. A field that is absent or null is "not given". */

static const cJSON *field(const cJSON *obj, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    return item && !cJSON_IsNull(item) ? item : NULL;
}

static int get_number(const cJSON *obj, const char *key, double lo, double hi, bool *set,
                      double *out, char *err, size_t err_len)
{
    const cJSON *item = field(obj, key);
    *set = item != NULL;
    if (!item)
        return 0;
    if (!cJSON_IsNumber(item))
        return bad(err, err_len, "'%s' must be a number", key);
    double v = item->valuedouble;
    if (!(v >= lo && v <= hi))
        return bad(err, err_len, "'%s' must be between %g and %g", key, lo, hi);
    *out = v;
    return 0;
}

static int get_int(const cJSON *obj, const char *key, double lo, double hi, bool *set, int64_t *out,
                   char *err, size_t err_len)
{
    double v = 0;
    int rc = get_number(obj, key, lo, hi, set, &v, err, err_len);
    if (rc || !*set)
        return rc;
    if (v != floor(v))
        return bad(err, err_len, "'%s' must be an integer", key);
    *out = (int64_t)v;
    return 0;
}

static int get_bool(const cJSON *obj, const char *key, bool *out, char *err, size_t err_len)
{
    const cJSON *item = field(obj, key);
    if (!item)
        return 0;
    if (!cJSON_IsBool(item))
        return bad(err, err_len, "'%s' must be true or false", key);
    *out = cJSON_IsTrue(item);
    return 0;
}

static int get_string(const cJSON *obj, const char *key, const char **out, char *err,
                      size_t err_len)
{
    const cJSON *item = field(obj, key);
    if (!item)
        return 0;
    if (!cJSON_IsString(item))
        return bad(err, err_len, "'%s' must be a string", key);
    *out = item->valuestring;
    return 0;
}

/* `stop`: a string or an array of strings. */
static int get_stop(const cJSON *obj, const char *key, struct serve_job *job, char *err,
                    size_t err_len)
{
    const cJSON *item = field(obj, key);
    if (!item)
        return 0;
    const cJSON *one = cJSON_IsString(item) ? item : NULL;
    int n = one ? 1 : cJSON_IsArray(item) ? cJSON_GetArraySize(item) : -1;
    if (n < 0)
        return bad(err, err_len, "'%s' must be a string or an array of strings", key);
    if (n > MAX_STOP_STRINGS)
        return bad(err, err_len, "'%s' may hold at most %d strings", key, MAX_STOP_STRINGS);
    job->stop = calloc((size_t)n + 1, sizeof(*job->stop));
    if (!job->stop)
        return -ENOMEM;
    for (int i = 0; i < n; i++) {
        const cJSON *s = one ? one : cJSON_GetArrayItem(item, i);
        if (!cJSON_IsString(s))
            return bad(err, err_len, "'%s' must be a string or an array of strings", key);
        size_t len = strlen(s->valuestring);
        if (len > MAX_STOP_LEN)
            return bad(err, err_len, "each '%s' string may be at most %d bytes", key, MAX_STOP_LEN);
        if (len == 0)
            continue;
        job->stop[job->n_stop] = strdup(s->valuestring);
        if (!job->stop[job->n_stop])
            return -ENOMEM;
        job->n_stop++;
    }
    return 0;
}

/* Sampling fields shared by OpenAI requests and Ollama's `options`. OpenAI's temperature range
 * is [0, 2]; Ollama does not bound it. */
static int get_sampling(const cJSON *obj, double max_temp, struct serve_job *job, bool *seed_set,
                        char *err, size_t err_len)
{
    struct nvl_sampler_params *p = &job->sampling;
    bool set;
    double v;
    int64_t i;
    int rc;
    if ((rc = get_number(obj, "temperature", 0, max_temp, &set, &v, err, err_len)))
        return rc;
    if (set)
        p->temperature = (float)v;
    if ((rc = get_number(obj, "top_p", 0, 1, &set, &v, err, err_len)))
        return rc;
    if (set)
        p->top_p = (float)v;
    if ((rc = get_number(obj, "min_p", 0, 1, &set, &v, err, err_len)))
        return rc;
    if (set)
        p->min_p = (float)v;
    if ((rc = get_int(obj, "top_k", 0, 1 << 30, &set, &i, err, err_len)))
        return rc;
    if (set)
        p->top_k = (int32_t)i;
    if ((rc = get_number(obj, "repeat_penalty", 1e-3, 100, &set, &v, err, err_len)))
        return rc;
    if (set)
        p->repeat_penalty = (float)v;
    if ((rc = get_int(obj, "repeat_last_n", 0, 1 << 20, &set, &i, err, err_len)))
        return rc;
    if (set)
        p->repeat_last_n = (int32_t)i;
    /* Seeds are 64-bit; JSON numbers arrive as doubles, exact up to 2^53. */
    if ((rc = get_int(obj, "seed", -9.2e18, 1.8e19, seed_set, &i, err, err_len)))
        return rc;
    if (*seed_set) {
        const cJSON *s = field(obj, "seed");
        p->seed = s->valuedouble < 0 ? (uint64_t)(int64_t)s->valuedouble : (uint64_t)s->valuedouble;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Messages */

struct msg_list {
    struct nvl_chat_message *msgs;
    char **owned; /* contents built from parts */
    size_t n;
};

static void msg_list_fini(struct msg_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->owned[i]);
    free(l->owned);
    free(l->msgs);
}

/* `content` is a string or (OpenAI) an array of {"type": "text", "text": ...} parts. */
static int message_content(const cJSON *msg, size_t index, const char **out, char **owned,
                           char *err, size_t err_len)
{
    const cJSON *c = field(msg, "content");
    if (!c) {
        *out = "";
        return 0;
    }
    if (cJSON_IsString(c)) {
        *out = c->valuestring;
        return 0;
    }
    if (!cJSON_IsArray(c))
        return bad(err, err_len, "messages[%zu].content must be a string or an array of parts",
                   index);
    struct serve_buf b = {0};
    const cJSON *part;
    cJSON_ArrayForEach(part, c)
    {
        const cJSON *type = field(part, "type");
        const cJSON *text = field(part, "text");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") != 0 ||
            !cJSON_IsString(text)) {
            serve_buf_fini(&b);
            return bad(err, err_len,
                       "messages[%zu].content: only parts of type \"text\" are supported", index);
        }
        if (serve_buf_puts(&b, text->valuestring)) {
            serve_buf_fini(&b);
            return -ENOMEM;
        }
    }
    if (serve_buf_reserve(&b, 0)) {
        serve_buf_fini(&b);
        return -ENOMEM;
    }
    *owned = b.data;
    *out = b.data;
    return 0;
}

static int parse_messages(const cJSON *root, bool ollama, struct msg_list *l, char *err,
                          size_t err_len)
{
    const cJSON *arr = field(root, "messages");
    if (!arr)
        return bad(err, err_len, "'messages' is required");
    if (!cJSON_IsArray(arr))
        return bad(err, err_len, "'messages' must be an array");
    size_t n = (size_t)cJSON_GetArraySize(arr);
    if (n == 0)
        return 0;
    l->msgs = calloc(n, sizeof(*l->msgs));
    l->owned = calloc(n, sizeof(*l->owned));
    if (!l->msgs || !l->owned)
        return -ENOMEM;
    const cJSON *msg;
    cJSON_ArrayForEach(msg, arr)
    {
        size_t i = l->n++;
        if (!cJSON_IsObject(msg))
            return bad(err, err_len, "messages[%zu] must be an object", i);
        const cJSON *role = field(msg, "role");
        if (!cJSON_IsString(role))
            return bad(err, err_len, "messages[%zu].role must be a string", i);
        const char *r = role->valuestring;
        if (strcmp(r, "developer") == 0)
            r = "system"; /* OpenAI's newer name for the system role */
        if (strcmp(r, "system") != 0 && strcmp(r, "user") != 0 && strcmp(r, "assistant") != 0)
            return bad(err, err_len,
                       "messages[%zu].role '%s' is not supported (system, user, assistant)", i,
                       role->valuestring);
        const cJSON *images = ollama ? field(msg, "images") : NULL;
        if (images && (!cJSON_IsArray(images) || cJSON_GetArraySize(images) > 0))
            return bad(err, err_len, "messages[%zu]: images are not supported", i);
        const char *content = NULL;
        int rc = message_content(msg, i, &content, &l->owned[i], err, err_len);
        if (rc)
            return rc;
        l->msgs[i] = (struct nvl_chat_message){.role = r, .content = content};
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Prompts */

static int tokenize_prompt(struct serve_server *srv, const char *text, struct serve_job *job,
                           char *err, size_t err_len)
{
    size_t n = 0;
    int rc = nvl_vocab_tokenize_alloc(srv->m->vocab, text, strlen(text),
                                      NVL_TOKENIZE_ADD_SPECIAL | NVL_TOKENIZE_PARSE_SPECIAL,
                                      &job->prompt, &n);
    if (rc == -ENOMEM)
        return rc;
    if (rc)
        return bad(err, err_len, "cannot tokenize the prompt: %s", nvl_strerror(rc));
    if (n == 0)
        return bad(err, err_len, "the prompt is empty");
    if (n >= (size_t)srv->info.n_ctx)
        return bad(err, err_len,
                   "the prompt is %zu tokens; the context holds %d (start the server with a "
                   "larger --ctx)",
                   n, srv->info.n_ctx);
    job->n_prompt = (int32_t)n;
    return 0;
}

static int apply_template(struct serve_server *srv, const struct nvl_chat_message *msgs, size_t n,
                          struct serve_job *job, char *err, size_t err_len)
{
    if (!srv->m->tmpl)
        return bad(err, err_len,
                   "the model has no chat template nvinfer knows; start the server with "
                   "--chat-template chatml|llama2|llama3|zephyr");
    char *text = NULL;
    int rc = nvl_chat_template_apply(srv->m->tmpl, msgs, n, true, &text);
    if (rc == -ENOMEM)
        return rc;
    if (rc)
        return bad(err, err_len, "cannot apply the chat template: %s", nvl_strerror(rc));
    rc = tokenize_prompt(srv, text, job, err, err_len);
    free(text);
    return rc;
}

/* /v1/completions `prompt`: a string or an array holding one string. */
static int completion_prompt(const cJSON *root, const char **out, char *err, size_t err_len)
{
    const cJSON *p = field(root, "prompt");
    if (!p)
        return bad(err, err_len, "'prompt' is required");
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1)
        p = cJSON_GetArrayItem(p, 0);
    if (!cJSON_IsString(p))
        return bad(err, err_len, "'prompt' must be a string (or an array of one string)");
    *out = p->valuestring;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Requests */

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static int parse_openai(struct serve_server *srv, const cJSON *root, struct serve_job *job,
                        char *err, size_t err_len)
{
    const bool chat = job->api == SERVE_API_CHAT;
    bool set, seed_set = false;
    int64_t v = 0;
    int rc;

    if ((rc = get_bool(root, "stream", &job->stream, err, err_len)))
        return rc;
    const cJSON *so = field(root, "stream_options");
    if (so) {
        if (!cJSON_IsObject(so))
            return bad(err, err_len, "'stream_options' must be an object");
        if ((rc = get_bool(so, "include_usage", &job->include_usage, err, err_len)))
            return rc;
    }
    if ((rc = get_sampling(root, 2.0, job, &seed_set, err, err_len)))
        return rc;
    if ((rc = get_int(root, "max_tokens", 1, MAX_PREDICT, &set, &v, err, err_len)))
        return rc;
    if (set)
        job->n_predict = (int32_t)v;
    if (chat) {
        if ((rc = get_int(root, "max_completion_tokens", 1, MAX_PREDICT, &set, &v, err, err_len)))
            return rc;
        if (set)
            job->n_predict = (int32_t)v;
    }
    if ((rc = get_int(root, "n", 1, 1, &set, &v, err, err_len)))
        return bad(err, err_len, "'n' must be 1: one choice per request");
    bool flag = false;
    if ((rc = get_bool(root, "logprobs", &flag, err, err_len)))
        return rc;
    if (flag)
        return bad(err, err_len, "'logprobs' is not supported");
    if (!chat) {
        flag = false;
        if ((rc = get_bool(root, "echo", &flag, err, err_len)))
            return rc;
        if (flag)
            return bad(err, err_len, "'echo' is not supported");
    }
    const cJSON *tools = field(root, "tools");
    if (tools && (!cJSON_IsArray(tools) || cJSON_GetArraySize(tools) > 0))
        return bad(err, err_len, "'tools' is not supported");
    if ((rc = get_stop(root, "stop", job, err, err_len)))
        return rc;
    const char *model = NULL;
    if ((rc = get_string(root, "model", &model, err, err_len)))
        return rc;
    if (!seed_set && !srv->defaults_seed_set)
        job->sampling.seed = mix64(srv->id_salt ^ atomic_fetch_add(&srv->id_counter, 1));

    if (chat) {
        struct msg_list l = {0};
        rc = parse_messages(root, false, &l, err, err_len);
        if (!rc && l.n == 0)
            rc = bad(err, err_len, "'messages' must not be empty");
        if (!rc)
            rc = apply_template(srv, l.msgs, l.n, job, err, err_len);
        msg_list_fini(&l);
        return rc;
    }
    const char *prompt = NULL;
    if ((rc = completion_prompt(root, &prompt, err, err_len)))
        return rc;
    return tokenize_prompt(srv, prompt, job, err, err_len);
}

static int parse_ollama(struct serve_server *srv, const cJSON *root, struct serve_job *job,
                        char *err, size_t err_len)
{
    bool set, seed_set = false;
    int64_t v = 0;
    int rc;

    job->stream = true; /* Ollama streams unless told not to */
    if ((rc = get_bool(root, "stream", &job->stream, err, err_len)))
        return rc;
    const char *model = NULL;
    if ((rc = get_string(root, "model", &model, err, err_len)))
        return rc;
    const cJSON *format = field(root, "format");
    if (format && !(cJSON_IsString(format) && format->valuestring[0] == '\0'))
        return bad(err, err_len, "'format' (structured output) is not supported");
    const cJSON *opts = field(root, "options");
    if (opts) {
        if (!cJSON_IsObject(opts))
            return bad(err, err_len, "'options' must be an object");
        if ((rc = get_sampling(opts, 100.0, job, &seed_set, err, err_len)))
            return rc;
        if ((rc = get_int(opts, "num_predict", -2, MAX_PREDICT, &set, &v, err, err_len)))
            return rc;
        if (set)
            job->n_predict = v < 0 ? -1 : (int32_t)v;
        if ((rc = get_stop(opts, "stop", job, err, err_len)))
            return rc;
    }
    if (!seed_set && !srv->defaults_seed_set)
        job->sampling.seed = mix64(srv->id_salt ^ atomic_fetch_add(&srv->id_counter, 1));

    if (job->api == SERVE_API_OLLAMA_CHAT) {
        struct msg_list l = {0};
        rc = parse_messages(root, true, &l, err, err_len);
        if (!rc && l.n == 0)
            rc = 1; /* Ollama: an empty conversation loads the model and answers at once */
        if (!rc)
            rc = apply_template(srv, l.msgs, l.n, job, err, err_len);
        msg_list_fini(&l);
        return rc;
    }

    const char *prompt = NULL, *system = NULL, *tmpl = NULL;
    bool raw = false;
    if ((rc = get_string(root, "prompt", &prompt, err, err_len)) ||
        (rc = get_string(root, "system", &system, err, err_len)) ||
        (rc = get_string(root, "template", &tmpl, err, err_len)) ||
        (rc = get_bool(root, "raw", &raw, err, err_len)))
        return rc;
    if (tmpl && tmpl[0])
        return bad(err, err_len, "'template' is not supported: the model's template is used");
    const cJSON *images = field(root, "images");
    if (images && (!cJSON_IsArray(images) || cJSON_GetArraySize(images) > 0))
        return bad(err, err_len, "images are not supported");
    if (!prompt || !prompt[0])
        return 1;
    if (raw || !srv->m->tmpl)
        return tokenize_prompt(srv, prompt, job, err, err_len);
    struct nvl_chat_message msgs[2];
    size_t n = 0;
    if (system && system[0])
        msgs[n++] = (struct nvl_chat_message){.role = "system", .content = system};
    msgs[n++] = (struct nvl_chat_message){.role = "user", .content = prompt};
    return apply_template(srv, msgs, n, job, err, err_len);
}

int serve_api_parse(struct serve_server *srv, enum serve_api api, const char *body, size_t len,
                    struct serve_job *job, char *err, size_t err_len)
{
    job->api = api;
    job->model_id = srv->info.id;
    job->created = (int64_t)time(NULL);
    job->sampling = srv->defaults;
    job->n_predict = srv->default_n_predict;
    const uint64_t r = mix64(srv->id_salt + atomic_fetch_add(&srv->id_counter, 1));
    snprintf(job->id, sizeof(job->id), "%s%016llx", api == SERVE_API_CHAT ? "chatcmpl-" : "cmpl-",
             (unsigned long long)r);

    if (len == 0)
        return bad(err, err_len, "the request has no body; a JSON object is expected");
    size_t error_at = 0;
    cJSON *root = parse_json(body, len, &error_at);
    if (!root)
        return bad(err, err_len, "the body is not valid JSON (error near byte %zu)", error_at);
    int rc;
    if (!cJSON_IsObject(root))
        rc = bad(err, err_len, "the body must be a JSON object");
    else if (api == SERVE_API_CHAT || api == SERVE_API_COMPLETION)
        rc = parse_openai(srv, root, job, err, err_len);
    else
        rc = parse_ollama(srv, root, job, err, err_len);
    cJSON_Delete(root);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Writing */

/* Prints a JSON value into out followed by `suffix`, and frees it. */
static int put_json(struct serve_buf *out, cJSON *root, const char *suffix)
{
    if (!root)
        return -ENOMEM;
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!s)
        return -ENOMEM;
    int rc = serve_buf_puts(out, s);
    free(s);
    if (!rc)
        rc = serve_buf_puts(out, suffix);
    return rc;
}

/* A cJSON string of generated text, made valid UTF-8. */
static cJSON *text_string(const char *text, size_t len)
{
    struct serve_buf b = {0};
    if (serve_utf8_sanitize(&b, text, len) || serve_buf_reserve(&b, 0)) {
        serve_buf_fini(&b);
        return NULL;
    }
    cJSON *s = cJSON_CreateString(b.data);
    serve_buf_fini(&b);
    return s;
}

static bool is_ollama(const struct serve_job *job)
{
    return job->api == SERVE_API_OLLAMA_GENERATE || job->api == SERVE_API_OLLAMA_CHAT;
}

static const char *finish_name(enum serve_finish f)
{
    return f == SERVE_FINISH_LENGTH ? "length" : "stop";
}

/* Ollama's created_at: RFC 3339 with nanoseconds, UTC. */
static void rfc3339_now(char *buf, size_t len)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char date[32];
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%09ldZ", date, ts.tv_nsec);
}

/* The object every OpenAI chunk or response starts with. */
static cJSON *openai_head(const struct serve_job *job, bool chunk)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    const char *object = job->api == SERVE_API_CHAT
                             ? (chunk ? "chat.completion.chunk" : "chat.completion")
                             : "text_completion";
    cJSON_AddStringToObject(o, "id", job->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)job->created);
    cJSON_AddStringToObject(o, "model", job->model_id);
    cJSON_AddStringToObject(o, "system_fingerprint", "nvload");
    return o;
}

/* choices[0] of an OpenAI chunk or response, with text (or no text when text is NULL). */
static cJSON *openai_choice(const struct serve_job *job, bool chunk, const char *text, size_t len,
                            const char *finish, bool role)
{
    cJSON *c = cJSON_CreateObject();
    if (!c)
        return NULL;
    cJSON_AddNumberToObject(c, "index", 0);
    if (job->api == SERVE_API_CHAT) {
        cJSON *m = cJSON_AddObjectToObject(c, chunk ? "delta" : "message");
        if (m && role)
            cJSON_AddStringToObject(m, "role", "assistant");
        if (m && text)
            cJSON_AddItemToObject(m, "content", text_string(text, len));
    } else {
        cJSON_AddItemToObject(c, "text", text_string(text ? text : "", text ? len : 0));
    }
    cJSON_AddNullToObject(c, "logprobs");
    if (finish)
        cJSON_AddStringToObject(c, "finish_reason", finish);
    else
        cJSON_AddNullToObject(c, "finish_reason");
    return c;
}

static cJSON *openai_usage(const struct serve_job *job)
{
    cJSON *u = cJSON_CreateObject();
    if (!u)
        return NULL;
    cJSON_AddNumberToObject(u, "prompt_tokens", job->n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", job->n_generated);
    cJSON_AddNumberToObject(u, "total_tokens", job->n_prompt + job->n_generated);
    return u;
}

static int openai_chunk(struct serve_job *job, const char *text, size_t len, const char *finish,
                        bool role, struct serve_buf *out)
{
    cJSON *o = openai_head(job, true);
    cJSON *choices = o ? cJSON_AddArrayToObject(o, "choices") : NULL;
    if (choices)
        cJSON_AddItemToArray(choices, openai_choice(job, true, text, len, finish, role));
    if (o && job->include_usage)
        cJSON_AddNullToObject(o, "usage");
    int rc = serve_buf_puts(out, "data: ");
    return rc ? rc : put_json(out, o, "\n\n");
}

/* The head of an Ollama line: model and created_at. */
static cJSON *ollama_head(const struct serve_job *job)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    char ts[64];
    rfc3339_now(ts, sizeof(ts));
    cJSON_AddStringToObject(o, "model", job->model_id);
    cJSON_AddStringToObject(o, "created_at", ts);
    return o;
}

static void ollama_add_text(const struct serve_job *job, cJSON *o, const char *text, size_t len)
{
    if (job->api == SERVE_API_OLLAMA_CHAT) {
        cJSON *m = cJSON_AddObjectToObject(o, "message");
        if (m) {
            cJSON_AddStringToObject(m, "role", "assistant");
            cJSON_AddItemToObject(m, "content", text_string(text, len));
        }
    } else {
        cJSON_AddItemToObject(o, "response", text_string(text, len));
    }
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int ollama_final(struct serve_job *job, const char *text, size_t len, const char *reason,
                        struct serve_buf *out)
{
    cJSON *o = ollama_head(job);
    if (!o)
        return -ENOMEM;
    ollama_add_text(job, o, text, len);
    cJSON_AddTrueToObject(o, "done");
    cJSON_AddStringToObject(o, "done_reason", reason);
    cJSON_AddNumberToObject(o, "total_duration", (double)(mono_ns() - job->t_received));
    cJSON_AddNumberToObject(o, "load_duration", 0);
    cJSON_AddNumberToObject(o, "prompt_eval_count", job->n_prompt);
    cJSON_AddNumberToObject(o, "prompt_eval_duration", (double)job->prompt_ns);
    cJSON_AddNumberToObject(o, "eval_count", job->n_generated);
    cJSON_AddNumberToObject(o, "eval_duration", (double)job->generate_ns);
    return put_json(out, o, "\n");
}

int serve_api_ollama_load(struct serve_server *srv, struct serve_job *job, struct serve_buf *out)
{
    (void)srv;
    return ollama_final(job, "", 0, "load", out);
}

int serve_api_stream_begin(struct serve_job *job, struct serve_buf *out)
{
    if (job->api == SERVE_API_CHAT)
        return openai_chunk(job, "", 0, NULL, true, out);
    return 0;
}

int serve_api_stream_text(struct serve_job *job, const char *text, size_t len,
                          struct serve_buf *out)
{
    if (!is_ollama(job))
        return openai_chunk(job, text, len, NULL, false, out);
    cJSON *o = ollama_head(job);
    if (!o)
        return -ENOMEM;
    ollama_add_text(job, o, text, len);
    cJSON_AddFalseToObject(o, "done");
    return put_json(out, o, "\n");
}

int serve_api_end(struct serve_job *job, const char *text, size_t len, struct serve_buf *out)
{
    const char *finish = finish_name(job->finish);
    if (is_ollama(job))
        return job->stream ? ollama_final(job, "", 0, finish, out)
                           : ollama_final(job, text, len, finish, out);
    if (!job->stream) {
        cJSON *o = openai_head(job, false);
        cJSON *choices = o ? cJSON_AddArrayToObject(o, "choices") : NULL;
        if (choices)
            cJSON_AddItemToArray(choices, openai_choice(job, false, text, len, finish, true));
        if (o)
            cJSON_AddItemToObject(o, "usage", openai_usage(job));
        return put_json(out, o, "");
    }
    /* The last delta is empty and carries the finish reason. */
    int rc = job->api == SERVE_API_CHAT ? openai_chunk(job, NULL, 0, finish, false, out)
                                        : openai_chunk(job, "", 0, finish, false, out);
    if (!rc && job->include_usage) {
        cJSON *o = openai_head(job, true);
        if (o) {
            cJSON_AddArrayToObject(o, "choices");
            cJSON_AddItemToObject(o, "usage", openai_usage(job));
        }
        rc = serve_buf_puts(out, "data: ");
        if (!rc)
            rc = put_json(out, o, "\n\n");
    }
    return rc ? rc : serve_buf_puts(out, "data: [DONE]\n\n");
}

int serve_api_stream_error(struct serve_job *job, const char *msg, struct serve_buf *out)
{
    if (is_ollama(job))
        return serve_api_error_ollama(out, msg) ? -ENOMEM : serve_buf_puts(out, "\n");
    int rc = serve_buf_puts(out, "data: ");
    if (!rc)
        rc = serve_api_error_openai(out, "server_error", NULL, msg);
    return rc ? rc : serve_buf_puts(out, "\n\n");
}

int serve_api_error_openai(struct serve_buf *out, const char *type, const char *code,
                           const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *e = o ? cJSON_AddObjectToObject(o, "error") : NULL;
    if (e) {
        cJSON_AddItemToObject(e, "message", text_string(msg, strlen(msg)));
        cJSON_AddStringToObject(e, "type", type);
        cJSON_AddNullToObject(e, "param");
        if (code)
            cJSON_AddStringToObject(e, "code", code);
        else
            cJSON_AddNullToObject(e, "code");
    }
    return put_json(out, o, "");
}

int serve_api_error_ollama(struct serve_buf *out, const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    if (o)
        cJSON_AddItemToObject(o, "error", text_string(msg, strlen(msg)));
    return put_json(out, o, "");
}

/* ------------------------------------------------------------------------------------------ */
/* Model listings */

int serve_api_models(struct serve_server *srv, struct serve_buf *out)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *data = o ? cJSON_AddArrayToObject(o, "data") : NULL;
    if (o)
        cJSON_AddStringToObject(o, "object", "list");
    if (data) {
        cJSON *m = cJSON_CreateObject();
        if (m) {
            cJSON_AddStringToObject(m, "id", srv->info.id);
            cJSON_AddStringToObject(m, "object", "model");
            cJSON_AddNumberToObject(m, "created", (double)srv->info.mtime);
            cJSON_AddStringToObject(m, "owned_by", "nvload");
            cJSON_AddItemToArray(data, m);
        }
    }
    return put_json(out, o, "");
}

int serve_api_model(struct serve_server *srv, struct serve_buf *out)
{
    cJSON *m = cJSON_CreateObject();
    if (m) {
        cJSON_AddStringToObject(m, "id", srv->info.id);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", (double)srv->info.mtime);
        cJSON_AddStringToObject(m, "owned_by", "nvload");
    }
    return put_json(out, m, "");
}

/* "135M", "1.1B": Ollama's parameter_size. */
static void param_size(uint64_t n, char *buf, size_t len)
{
    if (n >= 1000000000ull)
        snprintf(buf, len, "%.1fB", (double)n / 1e9);
    else
        snprintf(buf, len, "%.0fM", (double)n / 1e6);
}

static cJSON *ollama_details(struct serve_server *srv)
{
    cJSON *d = cJSON_CreateObject();
    if (!d)
        return NULL;
    char ps[32];
    param_size(srv->info.n_params, ps, sizeof(ps));
    cJSON_AddStringToObject(d, "parent_model", "");
    cJSON_AddStringToObject(d, "format", "gguf");
    cJSON_AddStringToObject(d, "family", "llama");
    cJSON *fam = cJSON_AddArrayToObject(d, "families");
    if (fam)
        cJSON_AddItemToArray(fam, cJSON_CreateString("llama"));
    cJSON_AddStringToObject(d, "parameter_size", ps);
    cJSON_AddStringToObject(d, "quantization_level", srv->info.quant);
    return d;
}

int serve_api_tags(struct serve_server *srv, struct serve_buf *out)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *models = o ? cJSON_AddArrayToObject(o, "models") : NULL;
    cJSON *m = models ? cJSON_CreateObject() : NULL;
    if (m) {
        char ts[64];
        struct tm tm;
        time_t t = (time_t)srv->info.mtime;
        gmtime_r(&t, &tm);
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
        cJSON_AddStringToObject(m, "name", srv->info.id);
        cJSON_AddStringToObject(m, "model", srv->info.id);
        cJSON_AddStringToObject(m, "modified_at", ts);
        cJSON_AddNumberToObject(m, "size", (double)srv->info.file_size);
        cJSON_AddItemToObject(m, "details", ollama_details(srv));
        cJSON_AddItemToArray(models, m);
    }
    return put_json(out, o, "");
}

int serve_api_show(struct serve_server *srv, const char *body, size_t len, struct serve_buf *out,
                   char *err, size_t err_len)
{
    cJSON *req = len ? parse_json(body, len, NULL) : NULL;
    if (!cJSON_IsObject(req)) {
        cJSON_Delete(req);
        return bad(err, err_len, "the body must be a JSON object with 'model'");
    }
    const cJSON *name = field(req, "model");
    if (!name)
        name = field(req, "name"); /* older clients */
    bool ok = cJSON_IsString(name);
    cJSON_Delete(req);
    if (!ok)
        return bad(err, err_len, "'model' (a string) is required");

    const struct nvl_llama_hparams *hp = nvl_llama_hparams(srv->m->model);
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return -ENOMEM;
    cJSON_AddStringToObject(o, "modelfile", "");
    cJSON_AddStringToObject(o, "parameters", "");
    cJSON_AddStringToObject(o, "template", srv->info.jinja);
    cJSON_AddItemToObject(o, "details", ollama_details(srv));
    cJSON *mi = cJSON_AddObjectToObject(o, "model_info");
    if (mi) {
        cJSON_AddStringToObject(mi, "general.architecture", "llama");
        cJSON_AddNumberToObject(mi, "general.parameter_count", (double)srv->info.n_params);
        cJSON_AddNumberToObject(mi, "llama.context_length", hp->n_ctx_train);
        cJSON_AddNumberToObject(mi, "llama.embedding_length", hp->n_embd);
        cJSON_AddNumberToObject(mi, "llama.block_count", hp->n_layer);
        cJSON_AddNumberToObject(mi, "llama.attention.head_count", hp->n_head);
        cJSON_AddNumberToObject(mi, "llama.attention.head_count_kv", hp->n_head_kv);
        cJSON_AddNumberToObject(mi, "llama.feed_forward_length", hp->n_ff);
        cJSON_AddNumberToObject(mi, "llama.rope.freq_base", hp->rope_freq_base);
        cJSON_AddNumberToObject(mi, "llama.vocab_size", hp->n_vocab);
    }
    cJSON *caps = cJSON_AddArrayToObject(o, "capabilities");
    if (caps)
        cJSON_AddItemToArray(caps, cJSON_CreateString("completion"));
    return put_json(out, o, "");
}
