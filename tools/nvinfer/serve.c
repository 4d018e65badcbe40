/* nvinfer serve: options, start-up and the SIGTERM drain.
 *
 * The model is loaded by the same code as `nvinfer run` (nvinfer_parse_args and
 * nvinfer_model_open): the server's own options are taken out of the command line first and the
 * rest goes to the CLI's parser, so model options (-m, -t, -c, --chat-template, sampling defaults,
 * and the loader backends as the CLI grows them) mean the same thing in both. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "serve.h"

struct serve_opts {
    const char *host;
    const char *port;
    const char *api_key_file;
    const char *alias;
    int32_t queue;
    int32_t parallel;
    int32_t max_connections;
    int32_t drain_timeout_s;
    size_t max_body;
    bool n_predict_set; /* -n was given: the default max_tokens of requests */
};

static void serve_usage(FILE *out)
{
    fprintf(out,
            "usage: nvinfer serve -m MODEL.gguf [--host 127.0.0.1] [--port 8000] [options]\n"
            "\n"
            "Serves the model over HTTP with the OpenAI API (/v1/chat/completions,\n"
            "/v1/completions, /v1/models) and the Ollama API (/api/generate, /api/chat,\n"
            "/api/tags, /api/show), plus /health and /metrics (Prometheus).\n"
            "\n"
            "  -m, --model FILE        GGUF model file (required)\n"
            "      --host ADDR         address to listen on (default 127.0.0.1; 0.0.0.0: all)\n"
            "      --port N            TCP port (default 8000; 0: any free port)\n"
            "      --api-key-file F    require 'Authorization: Bearer KEY' with the key in F\n"
            "                          on every endpoint but /health\n"
            "      --queue N           requests that may wait for a busy worker (default 16;\n"
            "                          0: none); more get 503\n"
            "      --parallel N        inference workers, each with its own KV cache (default 1)\n"
            "      --max-body BYTES    largest request body (default 1048576); larger get 413\n"
            "      --max-connections N open connections at most (default 256)\n"
            "      --alias NAME        model name clients see (default: the file name)\n"
            "      --drain-timeout S   on SIGTERM, wait this long for requests in flight\n"
            "                          (default 60), then cancel them\n"
            "  -t, --threads N         CPU threads per worker (default: CPUs / workers)\n"
            "  -c, --ctx N             context length of each worker (default: model's, max "
            "4096)\n"
            "  -n, --n-predict N       default max_tokens (default: until the end of the reply\n"
            "                          or a full context)\n"
            "  -v, --verbose           print the model, backend and one line per request\n"
            "  -h, --help              this text\n"
            "\n"
            "The other model options of `nvinfer --help` work as they do there: the backend and\n"
            "data path (--device, --backend, --nvme, --sim, budgets), --chat-template, --batch,\n"
            "--kv-f32, and --temp/--top-k/--top-p/--min-p/--repeat-penalty/--seed as defaults\n"
            "for requests that do not set them.\n");
}

static int parse_count(const char *name, const char *s, long long min, long long max,
                       long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        fprintf(stderr, "nvinfer serve: %s: '%s' is not an integer in [%lld, %lld]\n", name, s, min,
                max);
        return -1;
    }
    *out = v;
    return 0;
}

/* Takes the server's options out of argv; what is left goes to nvinfer_parse_args. Returns 0, 1
 * after --help, or -1 after an error. */
static int serve_parse_args(int argc, char **argv, struct serve_opts *so, int *rest_argc,
                            char **rest)
{
    static const char *const with_arg[] = {
        "--host",     "--port",  "--api-key-file",    "--queue",        "--parallel",
        "--max-body", "--alias", "--max-connections", "--drain-timeout"};
    memset(so, 0, sizeof(*so));
    so->host = "127.0.0.1";
    so->port = "8000";
    so->queue = 16;
    so->parallel = 1;
    so->max_connections = 256;
    so->drain_timeout_s = 60;
    so->max_body = 1u << 20;

    int n = 0;
    rest[n++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            serve_usage(stdout);
            return 1;
        }
        if (strcmp(a, "-n") == 0 || strncmp(a, "--n-predict", 11) == 0 ||
            (strncmp(a, "-n", 2) == 0 && a[2] != '\0'))
            so->n_predict_set = true;
        const char *name = NULL, *val = NULL;
        for (size_t k = 0; k < sizeof(with_arg) / sizeof(with_arg[0]); k++) {
            size_t len = strlen(with_arg[k]);
            if (strncmp(a, with_arg[k], len) == 0 && (a[len] == '\0' || a[len] == '=')) {
                name = with_arg[k];
                if (a[len] == '=') {
                    val = a + len + 1;
                } else if (i + 1 < argc) {
                    val = argv[++i];
                } else {
                    fprintf(stderr, "nvinfer serve: %s needs a value\n", name);
                    return -1;
                }
            }
        }
        if (!name) {
            rest[n++] = argv[i];
            continue;
        }
        long long v = 0;
        int rc = 0;
        if (strcmp(name, "--host") == 0) {
            so->host = val;
        } else if (strcmp(name, "--port") == 0) {
            rc = parse_count(name, val, 0, 65535, &v);
            so->port = val;
        } else if (strcmp(name, "--api-key-file") == 0) {
            so->api_key_file = val;
        } else if (strcmp(name, "--alias") == 0) {
            so->alias = val;
        } else if (strcmp(name, "--queue") == 0) {
            rc = parse_count(name, val, 0, 1 << 20, &v);
            so->queue = (int32_t)v;
        } else if (strcmp(name, "--parallel") == 0) {
            rc = parse_count(name, val, 1, 256, &v);
            so->parallel = (int32_t)v;
        } else if (strcmp(name, "--max-connections") == 0) {
            rc = parse_count(name, val, 1, 1 << 16, &v);
            so->max_connections = (int32_t)v;
        } else if (strcmp(name, "--drain-timeout") == 0) {
            rc = parse_count(name, val, 0, 86400, &v);
            so->drain_timeout_s = (int32_t)v;
        } else if (strcmp(name, "--max-body") == 0) {
            rc = parse_count(name, val, 64, 1ll << 32, &v);
            so->max_body = (size_t)v;
        }
        if (rc)
            return -1;
    }
    rest[n] = NULL;
    *rest_argc = n;
    return 0;
}

/* The key is the file's first line without surrounding white space. */
static char *read_api_key(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "nvinfer serve: cannot open the API key file %s: %s\n", path,
                strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && (sb.st_mode & 0077))
        fprintf(stderr, "nvinfer serve: warning: %s is readable by other users\n", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len = getline(&line, &cap, f);
    fclose(f);
    if (len < 0) {
        free(line);
        line = NULL;
        len = 0;
    }
    char *s = line ? line : "";
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n == 0) {
        fprintf(stderr, "nvinfer serve: the API key file %s is empty\n", path);
        free(line);
        return NULL;
    }
    char *key = strndup(s, n);
    free(line);
    return key;
}

/* Binds and listens; *ipv6 tells libmicrohttpd the family. Returns the socket or -1. */
static int listen_on(const char *host, const char *port, bool *ipv6, bool *loopback)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc) {
        fprintf(stderr, "nvinfer serve: cannot resolve --host %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        fprintf(stderr, "nvinfer serve: socket: %s\n", strerror(errno));
        freeaddrinfo(ai);
        return -1;
    }
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 128)) {
        fprintf(stderr, "nvinfer serve: cannot listen on %s port %s: %s\n", host, port,
                strerror(errno));
        close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    *ipv6 = ai->ai_family == AF_INET6;
    if (ai->ai_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ai->ai_addr;
        *loopback = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
    } else {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ai->ai_addr;
        *loopback = IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
    }
    freeaddrinfo(ai);
    return fd;
}

/* What /api/tags, /api/show and /metrics say about the model. */
/* The backend and the data path, as the CLI chose them (nvinfer_model_open), for /metrics. */
static void backend_info(struct serve_server *srv, const struct nvinfer_opts *o)
{
    struct serve_model_info *in = &srv->info;
    in->source = o->nvme ? "nvme" : o->sim ? "sim" : "file";
    if (!srv->m->gpu) {
        in->backend = "cpu";
        in->kernels = nvl_llama_cpu_kernels();
        /* drive.c reads a model on a drive into memory once; a file is mapped. */
        snprintf(in->data_path, sizeof(in->data_path), "%s", o->nvme || o->sim ? "ram" : "mmap");
        in->loader = "none";
        return;
    }
    struct nvl_gpu_stats st;
    nvl_gpu_model_stats(srv->m->gpu, &st);
    in->backend = "gpu";
    in->kernels = "cuda";
    static const char *const tier[3] = {"vram", "ram", "stream"};
    size_t n = 0;
    for (int t = 0; t < 3; t++) {
        in->gpu_layers[t] = st.layers[t];
        if (st.layers[t])
            n += (size_t)snprintf(in->data_path + n, sizeof(in->data_path) - n, "%s%s",
                                  n ? "+" : "", tier[t]);
    }
    in->loader = st.layers[NVL_GPU_TIER_STREAM] ? (o->backend ? o->backend : "auto") : "none";
}

static void model_info(struct serve_server *srv, const struct nvinfer_opts *o, const char *path)
{
    struct serve_model_info *in = &srv->info;
    const struct nvl_gguf *g = nvl_llama_gguf(srv->m->model);
    in->path = path;
    struct stat sb;
    if (stat(path, &sb) == 0) {
        in->file_size = (uint64_t)sb.st_size;
        in->mtime = (int64_t)sb.st_mtime;
    }
    uint64_t bytes[NVL_GGML_TYPE_COUNT] = {0};
    for (uint64_t i = 0; i < nvl_gguf_tensor_count(g); i++) {
        const struct nvl_gguf_tensor *t = nvl_gguf_tensor(g, i);
        in->n_params += nvl_gguf_tensor_nelements(t);
        if ((unsigned)t->type < NVL_GGML_TYPE_COUNT)
            bytes[t->type] += t->size;
    }
    /* The quantization is the type that holds most of the bytes. */
    unsigned best = 0;
    for (unsigned t = 1; t < NVL_GGML_TYPE_COUNT; t++)
        if (bytes[t] > bytes[best])
            best = t;
    /* Ollama spells it in capitals: "Q4_1". */
    snprintf(in->quant, sizeof(in->quant), "%s", nvl_ggml_type_name(best));
    for (char *c = in->quant; *c; c++)
        if (*c >= 'a' && *c <= 'z')
            *c = (char)(*c - 'a' + 'A');
    const char *jinja = NULL;
    in->jinja = nvl_gguf_get_str(g, "tokenizer.chat_template", &jinja, NULL) == 0 ? jinja : "";
    backend_info(srv, o);
    in->n_ctx = nvl_session_n_ctx(srv->m->session);
}

/* The model's name for clients: the file name without .gguf, or for a model on a drive (no -m
 * FILE given) the name the GGUF carries. */
static char *default_alias(const struct nvinfer_opts *o, const struct nvl_gguf *g)
{
    const char *name = NULL;
    if ((o->nvme || o->sim) && !o->same_as &&
        nvl_gguf_get_str(g, "general.name", &name, NULL) == 0 && name[0])
        return strdup(name);
    const char *path = o->same_as ? o->same_as : o->model;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 5 && strcmp(base + n - 5, ".gguf") == 0)
        n -= 5;
    return strndup(base, n);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Waits for SIGTERM or SIGINT, then drains: no new jobs, queued and running ones finish (up to
 * the drain timeout, or until a second signal), responses are sent. */
static void wait_and_drain(struct serve_server *srv, const sigset_t *set, int32_t timeout_s)
{
    int sig;
    while (sigwait(set, &sig) != 0)
        ;
    struct serve_sched_stats st;
    serve_sched_stats(srv->sched, &st);
    fprintf(stderr, "nvinfer serve: %s: draining (%d running, %d queued; new requests get 503)\n",
            strsignal(sig), st.active, st.queued);
    atomic_store(&srv->draining, true);
    serve_sched_drain(srv->sched);

    const uint64_t deadline = mono_ns() + (uint64_t)timeout_s * 1000000000ull;
    const struct timespec zero = {0, 0};
    bool cancelled = false;
    uint64_t cancel_deadline = 0;
    while (!serve_sched_wait_idle(srv->sched, 100)) {
        bool again = sigtimedwait(set, NULL, &zero) > 0;
        if (!cancelled && (again || mono_ns() >= deadline)) {
            fprintf(stderr, "nvinfer serve: %s; cancelling the requests in flight\n",
                    again ? "second signal" : "drain timeout");
            serve_sched_cancel_all(srv->sched);
            cancelled = true;
            cancel_deadline = mono_ns() + 5000000000ull;
        }
        if (cancelled && mono_ns() >= cancel_deadline)
            break;
    }
}

int nvinfer_serve(int argc, char **argv)
{
    struct serve_opts so;
    char **rest = calloc((size_t)argc + 1, sizeof(*rest));
    if (!rest)
        return 1;
    int rest_argc = 0;
    int rc = serve_parse_args(argc, argv, &so, &rest_argc, rest);
    if (rc) {
        free(rest);
        return rc > 0 ? 0 : 2;
    }
    struct nvinfer_opts o;
    rc = nvinfer_parse_args(rest_argc, rest, &o);
    free(rest);
    if (rc)
        return rc > 0 ? 0 : 2;
    if (o.prompt || o.chat || o.benchmark) {
        fprintf(stderr, "nvinfer serve: -p, -i and --benchmark are not server options\n");
        return 2;
    }
    if (o.n_threads == 0 && so.parallel > 1) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        o.n_threads = ncpu > so.parallel ? (int32_t)(ncpu / so.parallel) : 1;
    }

    int status = 1;
    struct serve_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return 1;
    char *alias = NULL;
    if (so.api_key_file) {
        srv->cfg.api_key = read_api_key(so.api_key_file);
        if (!srv->cfg.api_key) {
            free(srv);
            return 2;
        }
    }
    srv->cfg.max_body = so.max_body;
    srv->cfg.verbose = o.verbose;
    srv->defaults = o.sampling;
    srv->defaults_seed_set = o.seed_set;
    srv->default_n_predict = so.n_predict_set ? o.n_predict : -1;
    srv->metrics.t_start = mono_ns();
    srv->id_salt = mono_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL);

    /* Every thread inherits this mask, so the signals reach only sigwait() in this thread.
     * libmicrohttpd sends with MSG_NOSIGNAL; SIGPIPE is ignored for anything else. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct nvinfer_model m;
    if (nvinfer_model_open(&o, &m))
        goto err_free;
    srv->m = &m;
    alias = so.alias ? strdup(so.alias) : default_alias(&o, nvl_llama_gguf(m.model));
    if (!alias)
        goto err_close_model;
    srv->info.id = alias;
    model_info(srv, &o, o.same_as ? o.same_as : o.model);

    struct nvl_session_params sp;
    nvl_session_params_default(&sp);
    sp.gpu = m.gpu; /* as nvinfer_model_open made worker 0's session */
    sp.n_ctx = o.n_ctx;
    sp.n_threads = o.n_threads;
    sp.n_batch = o.n_batch;
    sp.kv_f32 = o.kv_f32;
    rc = serve_sched_create(&m, &sp, so.parallel, so.queue, &srv->metrics, &srv->sched);
    if (rc) {
        fprintf(stderr, "nvinfer serve: cannot start %d workers: %s%s\n", so.parallel,
                nvl_strerror(rc),
                m.gpu && so.parallel > 1 ? " (each GPU worker needs a KV cache in VRAM)" : "");
        goto err_close_model;
    }

    bool ipv6 = false, loopback = false;
    int fd = listen_on(so.host, so.port, &ipv6, &loopback);
    if (fd < 0)
        goto err_sched;
    struct MHD_Daemon *d = serve_http_start(srv, fd, (unsigned)so.max_connections, ipv6);
    if (!d) {
        close(fd);
        goto err_sched;
    }
    if (!loopback && !srv->cfg.api_key)
        fprintf(stderr,
                "nvinfer serve: warning: listening on %s without an API key: anyone who can "
                "reach this address can use the model (--api-key-file)\n",
                so.host);

    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "?", port[16] = "?";
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV);
    printf("nvinfer serve: listening on http://%s%s%s:%s (model %s, %d worker%s, context %d, "
           "queue %d, %s)\n",
           ipv6 ? "[" : "", host, ipv6 ? "]" : "", port, srv->info.id, so.parallel,
           so.parallel == 1 ? "" : "s", srv->info.n_ctx, so.queue,
           srv->cfg.api_key ? "API key required" : "no API key");
    fflush(stdout);

    wait_and_drain(srv, &set, so.drain_timeout_s);
    serve_http_stop(d);
    fprintf(stderr, "nvinfer serve: stopped\n");
    status = 0;

err_sched:
    serve_sched_destroy(srv->sched);
err_close_model:
    nvinfer_model_close(&m);
err_free:
    free(alias);
    free((char *)srv->cfg.api_key);
    free(srv);
    return status;
}
