/* gds: GPUDirect Storage through cuFile, loaded at run time with dlopen (no link-time dependency,
 * so nvload builds and runs where libcufile is absent and says so).
 *
 * cuFile moves file bytes straight into GPU memory when the nvidia-fs kernel module is loaded
 * and the filesystem and GPU support it. Without nvidia-fs it can only run in compatibility mode:
 * POSIX reads into a host bounce buffer, then a copy to the GPU. This backend detects that case,
 * says "compatibility mode" in the selection reason, and auto-selection ranks such a gds below the
 * plain file backend (which does the same POSIX reads without cuFile).
 *
 * Configuration. cuFile reads its settings when it starts, from the JSON file named by
 * CUFILE_ENV_PATH_JSON or else /etc/cufile.json; both are obeyed. When neither exists (libcufile
 * from the nvidia-cufile wheel) this backend writes a private one before the library is loaded
 * and points CUFILE_ENV_PATH_JSON at it: allow_compat_mode, and cuFile's log in the same private
 * directory, so that the last error cuFile logged can be quoted when a call fails.
 *
 * Registration needs udev. Even in compatibility mode, cuFileHandleRegister describes the file's
 * volume from the udev database (the block device's ID_FS_USAGE property in /run/udev/data).
 * Where that database is missing (containers without /run/udev, microVMs without udevd, such as
 * the accelerator machine) it fails with CU_FILE_HANDLE_NOT_REGISTERED (5027): measured there
 * with libcufile 1.15 and 1.20, and with properties.vanilla_posix_io_mode set. A failed call is
 * reported with the cuFile error by name, what this machine lacks and what to do.
 *
 * Reads go straight into device destinations with cuFileRead (any byte offset and length:
 * cuFile handles the alignment). Host and slot destinations are read into a device bounce buffer
 * and copied down. A pool of threads (opts.n_queues, at most 16) runs chunks in parallel. */
#include "backend.h"
#include "cuda_glue.h"
#include "file_target.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define GDS_CHUNK                                                                                  \
    (4ull << 20) /* bytes per cuFileRead (16 MiB reads failed, EPERM, in compatibility mode) */
#define GDS_MAX_ALIGN   (64u << 10) /* largest O_DIRECT alignment the bounce buffers allow for */
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
    struct cufile_error (*get_version)(int *version); /* optional: cuFileGetVersion (12.2+) */
};

/* CUfileOpError: CU_FILE_SUCCESS is 0 and every error is CUFILEOP_BASE_ERR (5000) + n; cuFileRead
 * returns them negated. Names from cufile.h (1.20); n = 21 and 32 are unassigned. */
#define CUFILEOP_BASE_ERR 5000
static const char *const cufile_err_names[] = {
    [1] = "CU_FILE_DRIVER_NOT_INITIALIZED",
    [2] = "CU_FILE_DRIVER_INVALID_PROPS",
    [3] = "CU_FILE_DRIVER_UNSUPPORTED_LIMIT",
    [4] = "CU_FILE_DRIVER_VERSION_MISMATCH",
    [5] = "CU_FILE_DRIVER_VERSION_READ_ERROR",
    [6] = "CU_FILE_DRIVER_CLOSING",
    [7] = "CU_FILE_PLATFORM_NOT_SUPPORTED",
    [8] = "CU_FILE_IO_NOT_SUPPORTED",
    [9] = "CU_FILE_DEVICE_NOT_SUPPORTED",
    [10] = "CU_FILE_NVFS_DRIVER_ERROR",
    [11] = "CU_FILE_CUDA_DRIVER_ERROR",
    [12] = "CU_FILE_CUDA_POINTER_INVALID",
    [13] = "CU_FILE_CUDA_MEMORY_TYPE_INVALID",
    [14] = "CU_FILE_CUDA_POINTER_RANGE_ERROR",
    [15] = "CU_FILE_CUDA_CONTEXT_MISMATCH",
    [16] = "CU_FILE_INVALID_MAPPING_SIZE",
    [17] = "CU_FILE_INVALID_MAPPING_RANGE",
    [18] = "CU_FILE_INVALID_FILE_TYPE",
    [19] = "CU_FILE_INVALID_FILE_OPEN_FLAG",
    [20] = "CU_FILE_DIO_NOT_SET",
    [22] = "CU_FILE_INVALID_VALUE",
    [23] = "CU_FILE_MEMORY_ALREADY_REGISTERED",
    [24] = "CU_FILE_MEMORY_NOT_REGISTERED",
    [25] = "CU_FILE_PERMISSION_DENIED",
    [26] = "CU_FILE_DRIVER_ALREADY_OPEN",
    [27] = "CU_FILE_HANDLE_NOT_REGISTERED",
    [28] = "CU_FILE_HANDLE_ALREADY_REGISTERED",
    [29] = "CU_FILE_DEVICE_NOT_FOUND",
    [30] = "CU_FILE_INTERNAL_ERROR",
    [31] = "CU_FILE_GETNEWFD_FAILED",
    [33] = "CU_FILE_NVFS_SETUP_ERROR",
    [34] = "CU_FILE_IO_DISABLED",
    [35] = "CU_FILE_BATCH_SUBMIT_FAILED",
    [36] = "CU_FILE_GPU_MEMORY_PINNING_FAILED",
    [37] = "CU_FILE_BATCH_FULL",
    [38] = "CU_FILE_ASYNC_NOT_SUPPORTED",
    [39] = "CU_FILE_INTERNAL_BATCH_SETUP_ERROR",
    [40] = "CU_FILE_INTERNAL_BATCH_SUBMIT_ERROR",
    [41] = "CU_FILE_INTERNAL_BATCH_GETSTATUS_ERROR",
    [42] = "CU_FILE_INTERNAL_BATCH_CANCEL_ERROR",
    [43] = "CU_FILE_NOMEM_ERROR",
    [44] = "CU_FILE_IO_ERROR",
    [45] = "CU_FILE_INTERNAL_BUF_REGISTER_ERROR",
    [46] = "CU_FILE_HASH_OPR_ERROR",
    [47] = "CU_FILE_INVALID_CONTEXT_ERROR",
    [48] = "CU_FILE_NVFS_INTERNAL_DRIVER_ERROR",
    [49] = "CU_FILE_BATCH_NOCOMPAT_ERROR",
};

/* "CU_FILE_<NAME> (<code>)" for a CUfileOpError, positive or negated. */
static const char *cufile_err_str(int err, char *buf, size_t len)
{
    int n = (err < 0 ? -err : err) - CUFILEOP_BASE_ERR;
    const char *name = NULL;

    if (n > 0 && (size_t)n < sizeof(cufile_err_names) / sizeof(cufile_err_names[0]))
        name = cufile_err_names[n];
    snprintf(buf, len, "%s (%d)", name ? name : "unknown cuFile error", err < 0 ? -err : err);
    return buf;
}

/* ---- cuFile's configuration -----------------------------------------------------------------
 * One per process (cuFile reads it once, when the library starts), shared by every gds loader
 * and probe: made by the first user, removed by the last. setenv() is not thread-safe against a
 * concurrent getenv(); it runs only while creating a gds loader or probing for one. */
static struct {
    pthread_mutex_t lock;
    unsigned users;
    bool ours;          /* CUFILE_ENV_PATH_JSON names our private file */
    char dir[PATH_MAX]; /* private directory: cufile.json and cuFile's logs */
    char json[PATH_MAX + 16];
    char src[PATH_MAX + 160]; /* what applies, for reasons and errors */
} gds_cfg = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Removes the private directory and everything cuFile wrote into it. */
static void gds_config_remove(void)
{
    DIR *d = opendir(gds_cfg.dir);
    struct dirent *e;

    if (d) {
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                unlinkat(dirfd(d), e->d_name, 0);
        }
        closedir(d);
    }
    rmdir(gds_cfg.dir);
}

/* Writes the private configuration. */
static int gds_config_write(void)
{
    const char *tmp = getenv("TMPDIR");
    FILE *f;
    int n;

    n = snprintf(gds_cfg.dir, sizeof(gds_cfg.dir), "%s/nvl-cufile.XXXXXX",
                 tmp && *tmp ? tmp : "/tmp");
    if (n < 0 || (size_t)n + sizeof("/cufile.json") > sizeof(gds_cfg.dir))
        return -ENAMETOOLONG;
    if (!mkdtemp(gds_cfg.dir))
        return -errno;
    snprintf(gds_cfg.json, sizeof(gds_cfg.json), "%s/cufile.json", gds_cfg.dir);
    f = fopen(gds_cfg.json, "w");
    if (!f) {
        int rc = -errno;

        rmdir(gds_cfg.dir);
        return rc;
    }
    fprintf(f,
            "{\n"
            "  \"logging\": { \"dir\": \"%s\", \"level\": \"ERROR\" },\n"
            "  \"properties\": { \"allow_compat_mode\": true }\n"
            "}\n",
            gds_cfg.dir);
    if (fclose(f)) {
        int rc = -errno;

        gds_config_remove();
        return rc;
    }
    return 0;
}

/* Takes a reference on cuFile's configuration, writing the private one if nothing else names one.
 * src describes what applies. */
static void gds_config_get(char *src, size_t src_len)
{
    const char *env;

    pthread_mutex_lock(&gds_cfg.lock);
    if (gds_cfg.users++)
        goto out;
    gds_cfg.ours = false;
    env = getenv("CUFILE_ENV_PATH_JSON");
    if (env) {
        snprintf(gds_cfg.src, sizeof(gds_cfg.src), "config CUFILE_ENV_PATH_JSON=%s", env);
    } else if (access("/etc/cufile.json", F_OK) == 0) {
        snprintf(gds_cfg.src, sizeof(gds_cfg.src), "config /etc/cufile.json");
    } else if (gds_config_write()) {
        snprintf(gds_cfg.src, sizeof(gds_cfg.src), "cuFile's default config (no private one)");
    } else if (setenv("CUFILE_ENV_PATH_JSON", gds_cfg.json, 1)) {
        gds_config_remove();
        snprintf(gds_cfg.src, sizeof(gds_cfg.src), "cuFile's default config (setenv failed)");
    } else {
        gds_cfg.ours = true;
        snprintf(gds_cfg.src, sizeof(gds_cfg.src), "private config: allow_compat_mode");
    }
out:
    snprintf(src, src_len, "%s", gds_cfg.src);
    pthread_mutex_unlock(&gds_cfg.lock);
}

static void gds_config_put(void)
{
    pthread_mutex_lock(&gds_cfg.lock);
    if (--gds_cfg.users == 0 && gds_cfg.ours) {
        const char *env = getenv("CUFILE_ENV_PATH_JSON");

        if (env && !strcmp(env, gds_cfg.json))
            unsetenv("CUFILE_ENV_PATH_JSON");
        gds_config_remove();
        gds_cfg.ours = false;
    }
    pthread_mutex_unlock(&gds_cfg.lock);
}

/* The last ERROR line cuFile logged into the private directory, or "" (shared configurations
 * log where they say). */
static void gds_config_last_error(char *out, size_t len)
{
    char line[512], path[PATH_MAX + 256];
    struct dirent *e;
    DIR *d;

    out[0] = '\0';
    pthread_mutex_lock(&gds_cfg.lock);
    d = gds_cfg.ours ? opendir(gds_cfg.dir) : NULL;
    while (d && (e = readdir(d))) {
        FILE *f;

        if (strncmp(e->d_name, "cufile", 6) || !strstr(e->d_name, ".log"))
            continue;
        snprintf(path, sizeof(path), "%s/%s", gds_cfg.dir, e->d_name);
        f = fopen(path, "r");
        while (f && fgets(line, sizeof(line), f)) {
            char *m = strstr(line, "ERROR");

            if (!m)
                continue;
            line[strcspn(line, "\n")] = '\0';
            snprintf(out, len, "%s", m);
        }
        if (f)
            fclose(f);
    }
    if (d)
        closedir(d);
    pthread_mutex_unlock(&gds_cfg.lock);
}

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

/* A boolean property in the cuFile configuration in use (the JSON file named by
 * CUFILE_ENV_PATH_JSON, or /etc/cufile.json): 1 or 0 as set there, -1 when absent (or no file).
 * A plain text search for "key": the files carry comments, so no strict JSON parser reads them. */
static int cufile_config_bool(const char *key)
{
    const char *path = getenv("CUFILE_ENV_PATH_JSON");
    char buf[65536], quoted[64];
    size_t n;
    char *k;
    FILE *f;

    f = fopen(path ? path : "/etc/cufile.json", "r");
    if (!f)
        return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    snprintf(quoted, sizeof(quoted), "\"%s\"", key);
    k = strstr(buf, quoted);
    if (!k)
        return -1;
    k = strchr(k + strlen(quoted), ':');
    if (!k)
        return -1;
    k++;
    while (*k == ' ' || *k == '\t' || *k == '\n' || *k == '\r')
        k++;
    return strncmp(k, "false", 5) != 0;
}

/* Whether the configuration allows the POSIX fallback (cuFile's default: yes). */
static bool cufile_compat_allowed(void)
{
    return cufile_config_bool("allow_compat_mode") != 0;
}

/* nvidia-fs is what makes cuFile direct; without it every read is a POSIX bounce. */
static bool nvidia_fs_loaded(void)
{
    return access("/proc/driver/nvidia-fs/version", F_OK) == 0;
}

/* Fills why with what gds would be here. Returns 0 (true GDS), 1 (compatibility mode) or
 * -errno. From a return >= 0 on, api holds the loaded library and a reference is held on the
 * configuration (gds_release drops both). */
static int gds_assess(const struct nvl_loader_opts *o, struct cufile_api *api, char *why,
                      size_t why_len)
{
    bool compat;
    char dev[128], cfg[PATH_MAX + 160];
    int version = 0;

    if (!o->path) {
        snprintf(why, why_len, "no file target (no path given)");
        return -ENODEV;
    }
    compat = !nvidia_fs_loaded();
    /* Before the library is loaded: cuFile reads its configuration when it starts. */
    gds_config_get(cfg, sizeof(cfg));
    if (cufile_load(api, why, why_len))
        goto err_put;
    if (compat && !gds_cfg.ours && !cufile_compat_allowed()) {
        snprintf(why, why_len,
                 "unavailable: nvidia-fs not loaded and allow_compat_mode is false in the %s", cfg);
        goto err_unload;
    }
    if (nvl__cuda_device_probe(o->cuda_device, dev, sizeof(dev))) {
        snprintf(why, why_len, "%s present, but %s", api->soname, dev);
        goto err_unload;
    }
    if (api->get_version)
        api->get_version(&version);
    if (!compat) {
        snprintf(why, why_len, "%s %d, nvidia-fs loaded: GPUDirect reads, %s, %s on %s",
                 api->soname, version, cfg, o->path, dev);
        return 0;
    }
    snprintf(why, why_len,
             "%s %d in compatibility mode (no nvidia-fs: POSIX reads via a host bounce buffer), "
             "%s, %s on %s",
             api->soname, version, cfg, o->path, dev);
    return 1;

err_unload:
    cufile_unload(api);
err_put:
    gds_config_put();
    return -ENODEV;
}

static void gds_release(struct cufile_api *api)
{
    cufile_unload(api);
    gds_config_put();
}

static int gds_probe(const struct nvl_loader_opts *o, char *why, size_t why_len)
{
    struct cufile_api api;
    int rc = gds_assess(o, &api, why, why_len);

    if (rc >= 0)
        gds_release(&api);
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
    bool assessed; /* api loaded and a configuration reference held */
    bool compat;
    bool driver_open;
    int fd;
    bool direct;
    void *fh;
    uint32_t n_threads;
    pthread_t threads[GDS_MAX_THREADS];
    struct gds_thread targs[GDS_MAX_THREADS];
    void *bounce[GDS_MAX_THREADS]; /* device bounce buffers, one per thread */
    uint32_t align;                /* O_DIRECT offset alignment (1 without O_DIRECT) */
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

/* Reads one chunk: into the device destination directly, else through the thread's bounce.
 * A chunk whose file range is not aligned for O_DIRECT (a GGUF's tensors sit at 32-byte
 * boundaries) is read as the aligned range around it into the bounce buffer, and the wanted
 * bytes copied from there on the GPU: in compatibility mode cuFile hands the range to pread on
 * the O_DIRECT descriptor as it is, which fails when it is not aligned. */
static int gds_run(struct gds *g, uint32_t t, const struct gds_job *j)
{
    const struct nvl_read *r = j->r;
    const struct nvl_span *s = &r->span[j->span];
    const uint64_t want = s->len - j->pos < GDS_CHUNK ? s->len - j->pos : GDS_CHUNK;
    const off_t want_off = (off_t)(s->dev_offset + s->skip + j->pos);
    const uint64_t head = (uint64_t)want_off % g->align;
    /* Direct into the destination only on the GPUDirect path with an aligned range; in
     * compatibility mode cuFile bounces through host memory anyway, and its reads into device
     * memory were refused (EPERM) on the H100 machine where reads into our bounce buffer work. */
    const bool direct = head == 0 && want % g->align == 0 && !g->compat;
    const uint64_t len = direct ? want : (head + want + g->align - 1) / g->align * g->align;
    const off_t file_off = want_off - (off_t)head;
    uint64_t dst_off;
    void *base;
    ssize_t n;

    if (r->dst.kind == NVL_DST_DEVICE && direct) {
        base = r->dst.ptr;
        dst_off = s->dst_offset + j->pos;
    } else {
        base = g->bounce[t];
        dst_off = 0;
    }
    n = g->api.read(g->fh, base, len, file_off, (off_t)dst_off);
    if (n < 0) {
        /* -1 with errno set (a failed POSIX call), or a negated CUfileOpError. */
        int err = n == -1 ? errno : 0;
        char name[64];

        if (err)
            nvl_log_error(NVL_LOADER_WHO, "gds: cuFileRead(%" PRIu64 " bytes at %lld) failed: %s",
                          len, (long long)file_off, strerror(err));
        else
            nvl_log_error(NVL_LOADER_WHO, "gds: cuFileRead(%" PRIu64 " bytes at %lld) failed: %s",
                          len, (long long)file_off, cufile_err_str((int)n, name, sizeof(name)));
        return err ? -err : -EIO;
    }
    /* The aligned range may run past the end of the file; the wanted bytes may not. */
    if ((uint64_t)n < head + want || (direct && (uint64_t)n != len)) {
        nvl_log_error(NVL_LOADER_WHO,
                      "gds: cuFileRead(%" PRIu64 " bytes at %lld) read %zd bytes (file too short?)",
                      len, (long long)file_off, n);
        return -EIO;
    }
    if (r->dst.kind == NVL_DST_DEVICE)
        return direct ? 0
                      : nvl__cuda_memcpy_d2d((uint8_t *)r->dst.ptr + s->dst_offset + j->pos,
                                             (uint8_t *)g->bounce[t] + head, want);
    {
        const struct nvl_loader *l = g->loader;
        uint8_t *host = r->dst.kind == NVL_DST_SLOT
                            ? l->slots[r->dst.slot].host + s->dst_offset + s->skip + j->pos
                            : (uint8_t *)r->dst.ptr + s->dst_offset + j->pos;

        return nvl__cuda_memcpy_d2h(host, (uint8_t *)g->bounce[t] + head, want);
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
    if (g->assessed)
        gds_release(&g->api);
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

/* Says why cuFileHandleRegister refused the file and what to do about it. */
static void gds_register_failed(struct gds *g, struct cufile_error e)
{
    const char *path = g->loader->opts.path;
    char name[64], last[256], hint[768];
    int version = 0;

    gds_config_last_error(last, sizeof(last));
    if (g->api.get_version)
        g->api.get_version(&version);
    hint[0] = '\0';
    if (e.err == CUFILEOP_BASE_ERR + 27) {
        /* CU_FILE_HANDLE_NOT_REGISTERED from the register call itself: cuFile could not build
         * its file object, which it does from the volume's udev properties. */
        bool udev = access("/run/udev/data", F_OK) == 0;

        snprintf(hint, sizeof(hint),
                 "; cuFile (version %d) could not describe the file's volume, which it does from "
                 "the udev database (/run/udev/data, %s) even in compatibility mode. Remedies: "
                 "%s, or use the file backend, which makes the same POSIX reads without cuFile",
                 version, udev ? "present, so see cuFile's log" : "missing here",
                 udev ? "check that udev knows the block device under the file (udevadm info "
                        "--query=property --name=DEVICE shows ID_FS_USAGE)"
                      : "run where udev's database exists (containers: --volume "
                        "/run/udev:/run/udev:ro; VMs: run udevd)");
    }
    nvl_log_error(NVL_LOADER_WHO,
                  "gds: cuFileHandleRegister(%s) failed: %s, CUDA driver error %d (%s, %s, fd "
                  "opened %s)%s%s%s%s",
                  path, cufile_err_str(e.err, name, sizeof(name)), e.cu_err,
                  g->compat ? "compatibility mode" : "nvidia-fs loaded",
                  gds_cfg.ours ? gds_cfg.json : gds_cfg.src,
                  g->direct ? "O_DIRECT" : "without O_DIRECT (the file system refused it)", hint,
                  last[0] ? "; cuFile logged \"" : "", last, last[0] ? "\"" : "");
}

static int gds_create(struct nvl_loader *l)
{
    struct gds *g = calloc(1, sizeof(*g));
    struct cufile_descr d;
    struct cufile_error e;
    uint32_t offset_align, mem_align;
    char why[1024], name[64];
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
    g->assessed = true;
    g->compat = rc == 1;
    e = g->api.driver_open();
    if (e.err) {
        char last[256];

        gds_config_last_error(last, sizeof(last));
        nvl_log_error(NVL_LOADER_WHO,
                      "gds: cuFileDriverOpen failed: %s, CUDA driver error %d (%s)%s%s%s",
                      cufile_err_str(e.err, name, sizeof(name)), e.cu_err,
                      gds_cfg.ours ? gds_cfg.json : gds_cfg.src,
                      last[0] ? "; cuFile logged \"" : "", last, last[0] ? "\"" : "");
        rc = -EIO;
        goto err_free;
    }
    g->driver_open = true;
    rc = nvl__file_open(l->opts.path, &g->fd, &g->direct);
    if (rc) {
        nvl_log_error(NVL_LOADER_WHO, "gds: cannot open %s: %s", l->opts.path, strerror(-rc));
        goto err_free;
    }
    if (fstat(g->fd, &st) || nvl__file_size(g->fd, &st, &l->capacity)) {
        nvl_log_error(NVL_LOADER_WHO, "gds: %s is neither a regular file nor a block device",
                      l->opts.path);
        rc = -EINVAL;
        goto err_free;
    }
    nvl__file_alignment(g->fd, &st, &offset_align, &mem_align);
    l->block_size = offset_align;
    g->align = g->direct ? offset_align : 1;
    if (g->align < 1 || g->align > GDS_MAX_ALIGN || (g->align & (g->align - 1))) {
        nvl_log_error(NVL_LOADER_WHO,
                      "gds: %s needs %u-byte aligned reads; this backend handles "
                      "powers of two up to %u",
                      l->opts.path, g->align, GDS_MAX_ALIGN);
        rc = -EINVAL;
        goto err_free;
    }
    memset(&d, 0, sizeof(d));
    d.type = CU_FILE_HANDLE_TYPE_OPAQUE_FD;
    d.handle.fd = g->fd;
    e = g->api.handle_register(&g->fh, &d);
    if (e.err) {
        g->fh = NULL;
        gds_register_failed(g, e);
        rc = -EIO;
        goto err_free;
    }
    g->n_threads = l->opts.n_queues < GDS_MAX_THREADS ? l->opts.n_queues : GDS_MAX_THREADS;
    for (uint32_t i = 0; i < g->n_threads; i++) {
        rc = nvl__cuda_malloc(GDS_CHUNK + 2 * GDS_MAX_ALIGN, &g->bounce[i]);
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
