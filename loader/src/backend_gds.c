/* gds: GPUDirect Storage through cuFile, loaded at run time with dlopen (no link-time dependency,
 * so nvload builds and runs where libcufile is absent and says so).
 *
 * cuFile moves file bytes straight into GPU memory when the nvidia-fs kernel module is loaded
 * and the filesystem and GPU support it. Without nvidia-fs, and with "allow_compat_mode" on (the
 * default), it silently falls back to POSIX reads through a host bounce buffer; this backend
 * detects that case and says "compatibility mode" in the selection reason, and auto-selection
 * ranks such a gds below the plain file backend.
 *
 * Reads go straight into device destinations with cuFileRead (any byte offset and length:
 * cuFile handles the alignment). Host and slot destinations are read into a device bounce buffer
 * and copied down. A pool of threads (opts.n_queues, at most 16) runs chunks in parallel. */
#include "backend.h"
#include "cuda_glue.h"
#include "file_target.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define GDS_CHUNK       (16ull << 20) /* bytes per cuFileRead */
#define GDS_MAX_THREADS 16u

/* The parts of cufile.h's ABI used here (CUDA 11.4+; unchanged since). */
struct cufile_error {
    int err;    /* CUfileOpError; 0 = success */
    int cu_err; /* CUresult */
};

struct cufile_descr {
    int type; /* CU_FILE_HANDLE_TYPE_OPAQUE_FD = 1 */
    union {
        int fd;
        void *handle;
    } handle;
    const void *fs_ops;
};

#define CU_FILE_HANDLE_TYPE_OPAQUE_FD 1

struct cufile_api {
    void *lib;
    const char *soname;
    struct cufile_error (*driver_open)(void);
    struct cufile_error (*driver_close)(void);
    struct cufile_error (*handle_register)(void **fh, struct cufile_descr *descr);
    void (*handle_deregister)(void *fh);
    ssize_t (*read)(void *fh, void *buf, size_t size, off_t file_off, off_t buf_off);
    int (*get_version)(int *version); /* optional: cuFileGetVersion (CUDA 12.2+) */
};

/* Loads libcufile and its symbols. 0, or -ENOENT / -ENOSYS with why filled in. */
static int cufile_load(struct cufile_api *api, char *why, size_t why_len)
{
    static const char *const names[] = {"libcufile.so.0", "libcufile.so"};

    memset(api, 0, sizeof(*api));
    for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]) && !api->lib; i++) {
        api->lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        api->soname = names[i];
    }
    if (!api->lib) {
        snprintf(why, why_len, "unavailable: libcufile not found");
        return -ENOENT;
    }
    *(void **)&api->driver_open = dlsym(api->lib, "cuFileDriverOpen");
    *(void **)&api->driver_close = dlsym(api->lib, "cuFileDriverClose");
    *(void **)&api->handle_register = dlsym(api->lib, "cuFileHandleRegister");
    *(void **)&api->handle_deregister = dlsym(api->lib, "cuFileHandleDeregister");
    *(void **)&api->read = dlsym(api->lib, "cuFileRead");
    *(void **)&api->get_version = dlsym(api->lib, "cuFileGetVersion");
    if (!api->driver_open || !api->driver_close || !api->handle_register ||
        !api->handle_deregister || !api->read) {
        snprintf(why, why_len, "unavailable: %s lacks the cuFile entry points", api->soname);
        dlclose(api->lib);
        api->lib = NULL;
        return -ENOSYS;
    }
    return 0;
}

static void cufile_unload(struct cufile_api *api)
{
    if (api->lib)
        dlclose(api->lib);
    api->lib = NULL;
}

/* Whether cuFile's configuration allows the POSIX fallback: "allow_compat_mode" in the JSON file
 * named by CUFILE_ENV_PATH_JSON, or /etc/cufile.json. Default true, as in cuFile. */
static bool cufile_compat_allowed(void)
{
    const char *path = getenv("CUFILE_ENV_PATH_JSON");
    char buf[65536];
    size_t n;
    char *k;
    FILE *f;

    f = fopen(path ? path : "/etc/cufile.json", "r");
    if (!f)
        return true;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    k = strstr(buf, "\"allow_compat_mode\"");
    if (!k)
        return true;
    k = strchr(k + strlen("\"allow_compat_mode\""), ':');
    if (!k)
        return true;
    k++;
    while (*k == ' ' || *k == '\t' || *k == '\n' || *k == '\r')
        k++;
    return strncmp(k, "false", 5) != 0;
}

/* nvidia-fs is what makes cuFile direct; without it every read is a POSIX bounce. */
static bool nvidia_fs_loaded(void)
{
    return access("/proc/driver/nvidia-fs/version", F_OK) == 0;
}

/* Fills why with what gds would be here. Returns 0 (true GDS), 1 (compatibility mode) or
 * -errno. On success api holds the loaded library. */
static int gds_assess(const struct nvl_loader_opts *o, struct cufile_api *api, char *why,
                      size_t why_len)
{
    bool compat;
    char dev[128];
    int version = 0;

    if (!o->path) {
        snprintf(why, why_len, "no file target (no path given)");
        return -ENODEV;
    }
    if (cufile_load(api, why, why_len))
        return -ENODEV;
    compat = !nvidia_fs_loaded();
    if (compat && !cufile_compat_allowed()) {
        snprintf(why, why_len,
                 "unavailable: nvidia-fs not loaded and allow_compat_mode is false in the "
                 "cuFile configuration");
        cufile_unload(api);
        return -ENODEV;
    }
    if (nvl__cuda_device_probe(o->cuda_device, dev, sizeof(dev))) {
        snprintf(why, why_len, "%s present, but %s", api->soname, dev);
        cufile_unload(api);
        return -ENODEV;
    }
    if (api->get_version)
        api->get_version(&version);
    if (!compat) {
        snprintf(why, why_len, "%s (version %d), nvidia-fs loaded, %s on %s: GPUDirect reads",
                 api->soname, version, o->path, dev);
        return 0;
    }
    snprintf(why, why_len,
             "%s (version %d) in compatibility mode: nvidia-fs not loaded, so cuFile reads "
             "through a host bounce buffer (POSIX), %s on %s",
             api->soname, version, o->path, dev);
    return 1;
}

static int gds_probe(const struct nvl_loader_opts *o, char *why, size_t why_len)
{
    struct cufile_api api;
    int rc = gds_assess(o, &api, why, why_len);

    if (rc >= 0)
        cufile_unload(&api);
    return rc;
}

/* One chunk of work: payload bytes [pos, pos + len) of span `span` of read r. */
struct gds_job {
    struct nvl_read *r;
    uint32_t span;
    uint64_t pos;
};

struct gds_read {
    uint32_t span; /* next span to cut */
    uint64_t pos;
    uint32_t active; /* chunks in flight */
    bool cut;
    int err;
    struct nvl_read *next;
};

struct gds;

struct gds_thread {
    struct gds *g;
    uint32_t index;
};

struct gds {
    struct nvl_loader *loader;
    struct cufile_api api;
    bool driver_open;
    int fd;
    bool direct;
    void *fh;
    uint32_t n_threads;
    pthread_t threads[GDS_MAX_THREADS];
    struct gds_thread targs[GDS_MAX_THREADS];
    void *bounce[GDS_MAX_THREADS]; /* device bounce buffers, one per thread */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct nvl_read *head, *tail; /* reads with chunks left to cut */
    bool stop;
};

/* Takes the next chunk under the lock. */
static bool gds_next(struct gds *g, struct gds_job *j)
{
    while (g->head) {
        struct nvl_read *r = g->head;
        struct gds_read *gr = r->be_priv;
        const struct nvl_span *s;

        if (gr->cut) {
            g->head = gr->next;
            if (!g->head)
                g->tail = NULL;
            continue;
        }
        s = &r->span[gr->span];
        j->r = r;
        j->span = gr->span;
        j->pos = gr->pos;
        gr->pos += GDS_CHUNK;
        if (gr->pos >= s->len) {
            gr->pos = 0;
            if (++gr->span == r->n_span)
                gr->cut = true;
        }
        gr->active++;
        return true;
    }
    return false;
}

/* Reads one chunk: into the device destination directly, else through the thread's bounce. */
static int gds_run(struct gds *g, uint32_t t, const struct gds_job *j)
{
    const struct nvl_read *r = j->r;
    const struct nvl_span *s = &r->span[j->span];
    uint64_t len = s->len - j->pos < GDS_CHUNK ? s->len - j->pos : GDS_CHUNK;
    off_t file_off = (off_t)(s->dev_offset + s->skip + j->pos);
    uint64_t dst_off;
    void *base;
    ssize_t n;

    if (r->dst.kind == NVL_DST_DEVICE) {
        base = r->dst.ptr;
        dst_off = s->dst_offset + j->pos;
    } else {
        base = g->bounce[t];
        dst_off = 0;
    }
    n = g->api.read(g->fh, base, len, file_off, (off_t)dst_off);
    if (n < 0)
        return n == -1 ? -EIO : (int)n;
    if ((uint64_t)n != len)
        return -EIO;
    if (r->dst.kind == NVL_DST_DEVICE)
        return 0;
    {
        const struct nvl_loader *l = g->loader;
        uint8_t *host = r->dst.kind == NVL_DST_SLOT
                            ? l->slots[r->dst.slot].host + s->dst_offset + s->skip + j->pos
                            : (uint8_t *)r->dst.ptr + s->dst_offset + j->pos;

        return nvl__cuda_memcpy_d2h(host, g->bounce[t], len);
    }
}

static void *gds_main(void *arg)
{
    struct gds_thread *ta = arg;
    struct gds *g = ta->g;

    /* cuFile works on the calling thread's current device. */
    nvl__cuda_set_device(g->loader->opts.cuda_device);
    pthread_mutex_lock(&g->lock);
    for (;;) {
        struct gds_job j;
        struct gds_read *gr;
        int rc;

        while (!g->stop && !gds_next(g, &j))
            pthread_cond_wait(&g->cond, &g->lock);
        if (g->stop)
            break;
        pthread_mutex_unlock(&g->lock);
        rc = gds_run(g, ta->index, &j);
        atomic_fetch_add(&j.r->commands, 1);
        pthread_mutex_lock(&g->lock);
        gr = j.r->be_priv;
        if (rc && !gr->err) {
            gr->err = rc;
            gr->cut = true;
        }
        if (--gr->active == 0 && gr->cut) {
            struct nvl_read *r = j.r;
            int err = gr->err;

            /* Off the queue if it is still there (a failed read may be). */
            if (g->head == r) {
                g->head = gr->next;
                if (!g->head)
                    g->tail = NULL;
            }
            free(gr);
            r->be_priv = NULL;
            pthread_mutex_unlock(&g->lock);
            nvl__read_complete(r, err, 0);
            pthread_mutex_lock(&g->lock);
        }
    }
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

static void gds_free(struct gds *g)
{
    for (uint32_t i = 0; i < GDS_MAX_THREADS; i++) {
        if (g->bounce[i])
            nvl__cuda_free(g->bounce[i]);
    }
    if (g->fh)
        g->api.handle_deregister(g->fh);
    if (g->fd >= 0)
        close(g->fd);
    if (g->driver_open)
        g->api.driver_close();
    cufile_unload(&g->api);
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

static int gds_create(struct nvl_loader *l)
{
    struct gds *g = calloc(1, sizeof(*g));
    struct cufile_descr d;
    struct cufile_error e;
    uint32_t offset_align, mem_align;
    char why[512];
    struct stat st;
    int rc;

    if (!g)
        return -ENOMEM;
    g->loader = l;
    g->fd = -1;
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    rc = gds_assess(&l->opts, &g->api, why, sizeof(why));
    if (rc < 0) {
        nvl_log_error(NVL_LOADER_WHO, "gds: %s", why);
        goto err_free;
    }
    e = g->api.driver_open();
    if (e.err) {
        nvl_log_error(NVL_LOADER_WHO, "gds: cuFileDriverOpen failed (error %d, CUDA %d)", e.err,
                      e.cu_err);
        rc = -EIO;
        goto err_free;
    }
    g->driver_open = true;
    rc = nvl__file_open(l->opts.path, &g->fd, &g->direct);
    if (rc)
        goto err_free;
    if (fstat(g->fd, &st) || nvl__file_size(g->fd, &st, &l->capacity)) {
        rc = -EINVAL;
        goto err_free;
    }
    nvl__file_alignment(g->fd, &st, &offset_align, &mem_align);
    l->block_size = offset_align;
    memset(&d, 0, sizeof(d));
    d.type = CU_FILE_HANDLE_TYPE_OPAQUE_FD;
    d.handle.fd = g->fd;
    e = g->api.handle_register(&g->fh, &d);
    if (e.err) {
        nvl_log_error(NVL_LOADER_WHO, "gds: cuFileHandleRegister(%s) failed (error %d)",
                      l->opts.path, e.err);
        g->fh = NULL;
        rc = -EIO;
        goto err_free;
    }
    g->n_threads = l->opts.n_queues < GDS_MAX_THREADS ? l->opts.n_queues : GDS_MAX_THREADS;
    for (uint32_t i = 0; i < g->n_threads; i++) {
        rc = nvl__cuda_malloc(GDS_CHUNK, &g->bounce[i]);
        if (rc)
            goto err_free;
    }
    for (uint32_t i = 0; i < g->n_threads; i++) {
        g->targs[i].g = g;
        g->targs[i].index = i;
        rc = pthread_create(&g->threads[i], NULL, gds_main, &g->targs[i]);
        if (rc) {
            pthread_mutex_lock(&g->lock);
            g->stop = true;
            pthread_cond_broadcast(&g->cond);
            pthread_mutex_unlock(&g->lock);
            for (uint32_t k = 0; k < i; k++)
                pthread_join(g->threads[k], NULL);
            rc = -rc;
            goto err_free;
        }
    }
    l->be = g;
    return 0;

err_free:
    gds_free(g);
    return rc;
}

static void gds_destroy(struct nvl_loader *l)
{
    struct gds *g = l->be;

    if (!g)
        return;
    pthread_mutex_lock(&g->lock);
    g->stop = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
    for (uint32_t i = 0; i < g->n_threads; i++)
        pthread_join(g->threads[i], NULL);
    gds_free(g);
    l->be = NULL;
}

static int gds_submit(struct nvl_loader *l, struct nvl_read *r)
{
    struct gds *g = l->be;
    struct gds_read *gr = calloc(1, sizeof(*gr));

    if (!gr)
        return -ENOMEM;
    r->be_priv = gr;
    pthread_mutex_lock(&g->lock);
    if (g->tail)
        ((struct gds_read *)g->tail->be_priv)->next = r;
    else
        g->head = r;
    g->tail = r;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
    return 0;
}

const struct nvl_backend_ops nvl__backend_gds = {
    .kind = NVL_LOADER_GDS,
    .name = "gds",
    .probe = gds_probe,
    .create = gds_create,
    .destroy = gds_destroy,
    .submit = gds_submit,
    .caps = NVL_BACKEND_NEEDS_PATH | NVL_BACKEND_DEVICE_DST,
};
