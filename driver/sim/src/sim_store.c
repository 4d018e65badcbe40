/* Backing stores of the sim's namespace: anonymous memory (or a private copy of a file), a file
 * or block device (O_DIRECT when the buffers and offsets allow it, buffered otherwise), or
 * nothing at all (null). */
#include "sim_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define STORE_DEFAULT_MEM  (1ull << 30)
#define STORE_DEFAULT_NULL (1ull << 40)

static int store_fail(char *err, size_t err_len, int ret, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int store_fail(char *err, size_t err_len, int ret, const char *fmt, ...)
{
    va_list ap;

    if (err && err_len) {
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return ret;
}

/* Size of a regular file or block device. */
static int fd_size(int fd, uint64_t *bytes, int *is_blk)
{
    struct stat st;

    if (fstat(fd, &st))
        return -errno;
    *is_blk = S_ISBLK(st.st_mode);
    if (*is_blk) {
        uint64_t sz;

        if (ioctl(fd, BLKGETSIZE64, &sz))
            return -errno;
        *bytes = sz;
        return 0;
    }
    if (!S_ISREG(st.st_mode))
        return -EINVAL;
    *bytes = (uint64_t)st.st_size;
    return 0;
}

/* The alignment O_DIRECT needs on this file: statx's DIOALIGN where the kernel reports it, the
 * logical sector size for a block device, 4 KiB otherwise. */
static void dio_alignment(struct sim_store *s, const char *path, int is_blk)
{
    s->dio_mem_align = 4096;
    s->dio_off_align = 4096;
#ifdef STATX_DIOALIGN
    {
        struct statx stx;

        if (!statx(AT_FDCWD, path, 0, STATX_DIOALIGN, &stx) && (stx.stx_mask & STATX_DIOALIGN) &&
            stx.stx_dio_mem_align && stx.stx_dio_offset_align) {
            s->dio_mem_align = stx.stx_dio_mem_align;
            s->dio_off_align = stx.stx_dio_offset_align;
            return;
        }
    }
#endif
    if (is_blk) {
        int ssz;

        if (!ioctl(s->fd, BLKSSZGET, &ssz) && ssz > 0) {
            s->dio_mem_align = (uint32_t)ssz;
            s->dio_off_align = (uint32_t)ssz;
        }
    }
}

static int store_open_file(struct sim_store *s, struct nvl_sim_opts *o, char *err, size_t err_len)
{
    int flags = o->read_only ? O_RDONLY : O_RDWR;
    uint64_t size;
    int is_blk, ret;

    s->fd = open(o->path, flags | O_CLOEXEC | (o->read_only ? 0 : O_CREAT), 0644);
    if (s->fd < 0)
        return store_fail(err, err_len, -errno, "cannot open %s: %s", o->path, strerror(errno));
    ret = fd_size(s->fd, &size, &is_blk);
    if (ret) {
        store_fail(err, err_len, ret, "%s is not a regular file or block device", o->path);
        goto err_close;
    }
    if (!o->ns_bytes) {
        o->ns_bytes = size;
    } else if (o->ns_bytes > size) {
        if (is_blk || o->read_only) {
            ret = store_fail(err, err_len, -EINVAL, "%s has %llu bytes, size asks for %llu",
                             o->path, (unsigned long long)size, (unsigned long long)o->ns_bytes);
            goto err_close;
        }
        if (ftruncate(s->fd, (off_t)o->ns_bytes)) {
            ret =
                store_fail(err, err_len, -errno, "cannot extend %s: %s", o->path, strerror(errno));
            goto err_close;
        }
    }
    if (o->ns_bytes < o->lba_size) {
        ret = store_fail(err, err_len, -EINVAL, "%s is smaller than one %u-byte block", o->path,
                         o->lba_size);
        goto err_close;
    }
    s->fd_direct = -1;
    if (o->direct) {
        s->fd_direct = open(o->path, flags | O_CLOEXEC | O_DIRECT);
        if (s->fd_direct >= 0)
            dio_alignment(s, o->path, is_blk);
    }
    return 0;

err_close:
    close(s->fd);
    s->fd = -1;
    return ret;
}

static int store_open_mem(struct sim_store *s, struct nvl_sim_opts *o, char *err, size_t err_len)
{
    uint64_t file_size = 0;
    int fd = -1, is_blk, ret;

    if (o->path[0]) {
        /* A private map of the file: reads see its contents, writes stay in memory. */
        fd = open(o->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return store_fail(err, err_len, -errno, "cannot open %s: %s", o->path, strerror(errno));
        ret = fd_size(fd, &file_size, &is_blk);
        if (ret || is_blk) {
            close(fd);
            return store_fail(err, err_len, -EINVAL, "mode=mem needs a regular file: %s", o->path);
        }
        if (!o->ns_bytes)
            o->ns_bytes = file_size;
    }
    if (!o->ns_bytes)
        o->ns_bytes = STORE_DEFAULT_MEM;
    if (o->ns_bytes < o->lba_size) {
        if (fd >= 0)
            close(fd);
        return store_fail(err, err_len, -EINVAL, "namespace smaller than one block");
    }
    s->mem_len = (size_t)((o->ns_bytes + SIM_PAGE - 1) & ~(uint64_t)(SIM_PAGE - 1));
    s->mem = mmap(NULL, s->mem_len, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (s->mem == MAP_FAILED) {
        s->mem = NULL;
        if (fd >= 0)
            close(fd);
        return store_fail(err, err_len, -ENOMEM, "cannot map %zu bytes", s->mem_len);
    }
    if (fd >= 0 && file_size) {
        size_t n = file_size < s->mem_len ? (size_t)file_size : s->mem_len;
        /* Map the file over the start of the anonymous area, populated up front so that the
         * first pass of a benchmark does not measure page faults. */
        void *p =
            mmap(s->mem, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_POPULATE, fd, 0);

        if (p == MAP_FAILED) {
            ret = -errno;
            munmap(s->mem, s->mem_len);
            s->mem = NULL;
            close(fd);
            return store_fail(err, err_len, ret, "cannot map %s", o->path);
        }
    }
    if (fd >= 0)
        close(fd);
    return 0;
}

int nvl__sim_store_open(struct sim_store *s, struct nvl_sim_opts *o, char *err, size_t err_len)
{
    int ret = 0;

    memset(s, 0, sizeof(*s));
    s->fd = -1;
    s->fd_direct = -1;
    s->kind = o->backing;
    s->read_only = o->read_only;
    switch (o->backing) {
    case NVL_SIM_BACKING_FILE:
        ret = store_open_file(s, o, err, err_len);
        break;
    case NVL_SIM_BACKING_MEM:
        ret = store_open_mem(s, o, err, err_len);
        break;
    case NVL_SIM_BACKING_NULL:
        if (!o->ns_bytes)
            o->ns_bytes = STORE_DEFAULT_NULL;
        break;
    default:
        ret = store_fail(err, err_len, -EINVAL, "unknown backing %d", (int)o->backing);
    }
    if (ret)
        return ret;
    /* The namespace holds whole blocks only. */
    o->ns_bytes -= o->ns_bytes % o->lba_size;
    s->bytes = o->ns_bytes;
    return 0;
}

void nvl__sim_store_close(struct sim_store *s)
{
    if (s->mem)
        munmap(s->mem, s->mem_len);
    if (s->fd_direct >= 0)
        close(s->fd_direct);
    if (s->fd >= 0)
        close(s->fd);
    memset(s, 0, sizeof(*s));
    s->fd = -1;
    s->fd_direct = -1;
}

/* Whether every segment and the offset meet O_DIRECT's alignment. */
static int store_direct_ok(const struct sim_store *s, uint64_t off, const struct sim_seg *segs,
                           uint32_t nseg)
{
    uint32_t i;

    if (s->fd_direct < 0 || (off & (s->dio_off_align - 1)))
        return 0;
    for (i = 0; i < nseg; i++) {
        if (((uintptr_t)segs[i].p & (s->dio_mem_align - 1)) ||
            (segs[i].len & (s->dio_off_align - 1)))
            return 0;
    }
    return 1;
}

/* preadv/pwritev over the segments, IOV_MAX at a time, retrying short transfers. */
static int store_file_io(struct sim_store *s, int write, uint64_t off, const struct sim_seg *segs,
                         uint32_t nseg)
{
    int fd = store_direct_ok(s, off, segs, nseg) ? s->fd_direct : s->fd;
    struct iovec iov[64];
    uint32_t i = 0;
    uint64_t skip = 0; /* bytes of segs[i] already done */

    while (i < nseg) {
        uint32_t n = 0, j;
        ssize_t r;

        for (j = i; j < nseg && n < 64; j++, n++) {
            iov[n].iov_base = segs[j].p + (j == i ? skip : 0);
            iov[n].iov_len = (size_t)(segs[j].len - (j == i ? skip : 0));
        }
        r = write ? pwritev(fd, iov, (int)n, (off_t)off) : preadv(fd, iov, (int)n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0) {
            /* Reading past the end of a file the namespace extends: zeros. */
            if (write)
                return -EIO;
            for (j = i; j < nseg; j++) {
                memset(segs[j].p + (j == i ? skip : 0), 0,
                       (size_t)(segs[j].len - (j == i ? skip : 0)));
            }
            return 0;
        }
        off += (uint64_t)r;
        while (r > 0 && i < nseg) {
            uint64_t left = segs[i].len - skip;

            if ((uint64_t)r >= left) {
                r -= (ssize_t)left;
                i++;
                skip = 0;
            } else {
                skip += (uint64_t)r;
                r = 0;
            }
        }
    }
    return 0;
}

int nvl__sim_store_read(struct sim_store *s, uint64_t off, const struct sim_seg *segs,
                        uint32_t nseg)
{
    uint32_t i;

    switch (s->kind) {
    case NVL_SIM_BACKING_MEM:
        for (i = 0; i < nseg; i++) {
            memcpy(segs[i].p, s->mem + off, (size_t)segs[i].len);
            off += segs[i].len;
        }
        return 0;
    case NVL_SIM_BACKING_FILE:
        return store_file_io(s, 0, off, segs, nseg);
    default:
        return 0;
    }
}

int nvl__sim_store_write(struct sim_store *s, uint64_t off, const struct sim_seg *segs,
                         uint32_t nseg)
{
    uint32_t i;

    switch (s->kind) {
    case NVL_SIM_BACKING_MEM:
        for (i = 0; i < nseg; i++) {
            memcpy(s->mem + off, segs[i].p, (size_t)segs[i].len);
            off += segs[i].len;
        }
        return 0;
    case NVL_SIM_BACKING_FILE:
        return store_file_io(s, 1, off, segs, nseg);
    default:
        return 0;
    }
}

int nvl__sim_store_flush(struct sim_store *s)
{
    if (s->kind == NVL_SIM_BACKING_FILE && !s->read_only && fdatasync(s->fd))
        return -errno;
    return 0;
}
