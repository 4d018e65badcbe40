/* Shared fixtures of the loader tests: pattern files, sims with a known pattern, and a battery of
 * reads checked against the pattern (which the test generated itself, so the reference is
 * independent of every read path under test). */
#ifndef NVL_TESTS_LOADER_UTIL_H
#define NVL_TESTS_LOADER_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nvl_loader.h"
#include "nvl_sim.h"

#define TU_MIB ((uint64_t)1 << 20)

static inline uint64_t tu_rng(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static inline void tu_fill(uint8_t *p, uint64_t n, uint64_t seed)
{
    uint64_t s = seed | 1;

    for (uint64_t i = 0; i < n; i += 8) {
        uint64_t v = tu_rng(&s);

        memcpy(p + i, &v, n - i < 8 ? n - i : 8);
    }
}

/* A temporary file of `bytes` pattern bytes; the pattern is returned in *ref (caller frees). */
static inline char *tu_pattern_file(uint64_t bytes, uint64_t seed, uint8_t **ref)
{
    const char *dir = getenv("TMPDIR");
    char *path = malloc(4096);
    uint8_t *buf = malloc(bytes);
    int fd;

    assert_non_null(path);
    assert_non_null(buf);
    /* The build tree is on a real filesystem (O_DIRECT works there; /tmp may be tmpfs). */
    snprintf(path, 4096, "%s/nvl_loader_test_XXXXXX", dir ? dir : ".");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    tu_fill(buf, bytes, seed);
    assert_int_equal(pwrite(fd, buf, bytes, 0), (ssize_t)bytes);
    fsync(fd);
    close(fd);
    *ref = buf;
    return path;
}

struct tu_sim {
    struct nvl_sim *sim;
    struct nvl_ctrl *ctrl;
    uint8_t *ref; /* the pattern the namespace holds */
    uint64_t bytes;
    char *path; /* file backing, or NULL */
};

/* A sim holding `bytes` of pattern: in memory (path NULL) or in a pattern file, brought up with
 * n_queues queues of qsize entries. extra: more sim options ("lba=4096,..."), may be NULL. */
static inline void tu_sim_up(struct tu_sim *t, bool file, uint64_t bytes, uint32_t n_queues,
                             uint32_t qsize, const char *extra)
{
    struct nvl_sim_opts so;
    struct nvl_ctrl_opts co;
    char err[128];

    memset(t, 0, sizeof(*t));
    t->bytes = bytes;
    nvl_sim_opts_init(&so);
    if (file) {
        t->path = tu_pattern_file(bytes, 7, &t->ref);
        so.backing = NVL_SIM_BACKING_FILE;
        snprintf(so.path, sizeof(so.path), "%s", t->path);
        so.read_only = 1;
    } else {
        so.backing = NVL_SIM_BACKING_MEM;
        so.ns_bytes = bytes;
    }
    if (extra)
        assert_int_equal(nvl_sim_opts_parse(&so, extra, err, sizeof(err)), 0);
    assert_int_equal(nvl_sim_create(&so, &t->sim), 0);
    if (!file) {
        size_t len;
        uint8_t *mem = nvl_sim_mem(t->sim, &len);

        assert_non_null(mem);
        assert_true(len >= bytes);
        t->ref = malloc(bytes);
        assert_non_null(t->ref);
        tu_fill(t->ref, bytes, 7);
        memcpy(mem, t->ref, bytes);
    }
    nvl_ctrl_opts_init(&co);
    co.n_io_queues = n_queues;
    co.io_queue_depth = qsize;
    assert_int_equal(nvl_ctrl_create(nvl_sim_transport(t->sim), &co, &t->ctrl), 0);
}

static inline void tu_sim_down(struct tu_sim *t)
{
    nvl_ctrl_destroy(t->ctrl);
    nvl_sim_destroy(t->sim);
    if (t->path) {
        unlink(t->path);
        free(t->path);
    }
    free(t->ref);
    memset(t, 0, sizeof(*t));
}

/* No rule of the sim was broken. */
static inline void tu_sim_assert_clean(struct tu_sim *t)
{
    struct nvl_sim_stats st;

    nvl_sim_get_stats(t->sim, &st);
    assert_int_equal(st.violations_total, 0);
    assert_int_equal(st.dma_faults, 0);
}

/* Reads n extents into dst and checks every delivered byte against ref. */
static inline void tu_read_check(struct nvl_loader *l, const uint8_t *ref,
                                 const struct nvl_extent *e, uint32_t n, struct nvl_dst dst)
{
    struct nvl_read_stats st;
    struct nvl_read *r;
    uint64_t *off = calloc(n, sizeof(*off));
    const uint8_t *base;
    uint64_t bytes = 0;

    assert_non_null(off);
    assert_int_equal(nvl_loader_read_async(l, e, n, dst, &r), 0);
    for (uint32_t i = 0; i < n; i++)
        off[i] = nvl_read_offset(r, i);
    assert_int_equal(nvl_loader_wait(r, &st), 0);
    base = dst.kind == NVL_DST_SLOT ? nvl_loader_slot_host(l, dst.slot) : dst.ptr;
    for (uint32_t i = 0; i < n; i++) {
        assert_memory_equal(base + off[i], ref + e[i].offset, e[i].len);
        bytes += e[i].len;
    }
    assert_int_equal(st.bytes, bytes);
    assert_true(st.device_bytes >= bytes);
    assert_int_equal(st.device_bytes % nvl_loader_block_size(l), 0);
    assert_true(st.commands >= 1);
    free(off);
}

/* The battery every backend passes: aligned, unaligned, tiny, tail-of-target, many extents,
 * larger-than-a-slot host reads, slot reads, async overlap, load_layer. cap <= bytes of ref. */
static inline void tu_battery(struct nvl_loader *l, const uint8_t *ref, uint64_t cap)
{
    const uint32_t bs = nvl_loader_block_size(l);
    uint64_t slot = nvl_loader_slot_bytes(l), s = 99;
    uint8_t *buf = malloc(4 * slot + 64);
    struct nvl_extent e[512];
    struct nvl_read_stats st;
    struct nvl_read *r[4];

    assert_non_null(buf);
    assert_int_equal(nvl_loader_capacity(l), cap);
    /* Aligned block, unaligned byte, a single byte, the very last byte. */
    e[0] = (struct nvl_extent){0, bs};
    tu_read_check(l, ref, e, 1, nvl_dst_host(buf, slot));
    e[0] = (struct nvl_extent){bs + 3, 2 * bs - 7};
    tu_read_check(l, ref, e, 1, nvl_dst_host(buf + 1, slot));
    e[0] = (struct nvl_extent){12345, 1};
    tu_read_check(l, ref, e, 1, nvl_dst_host(buf + 5, slot));
    e[0] = (struct nvl_extent){cap - 1, 1};
    tu_read_check(l, ref, e, 1, nvl_dst_host(buf, slot));
    e[0] = (struct nvl_extent){cap - 3 * bs - 17, 3 * bs + 17};
    tu_read_check(l, ref, e, 1, nvl_dst_slot(0));
    /* A host read three slots long, unaligned both ends, into an unaligned address. */
    e[0] = (struct nvl_extent){777, 3 * slot - 1000};
    tu_read_check(l, ref, e, 1, nvl_dst_host(buf + 3, 4 * slot));
    /* Many small extents at random offsets, packed into one host buffer and into a slot. */
    for (uint32_t i = 0; i < 512; i++) {
        e[i].len = 1 + tu_rng(&s) % 3000;
        e[i].offset = tu_rng(&s) % (cap - e[i].len);
    }
    tu_read_check(l, ref, e, 512, nvl_dst_host(buf + 7, 4 * slot));
    tu_read_check(l, ref, e, 64, nvl_dst_slot(1));
    /* Several reads in flight at once, polled then waited. */
    for (uint32_t i = 0; i < 4; i++) {
        e[i] = (struct nvl_extent){i * 100003ull, 200000};
        assert_int_equal(
            nvl_loader_read_async(l, &e[i], 1, nvl_dst_host(buf + i * slot, slot), &r[i]), 0);
    }
    for (uint32_t i = 0; i < 4; i++) {
        while (nvl_read_poll(r[i]) == -EAGAIN)
            usleep(100);
        assert_int_equal(nvl_loader_wait(r[i], &st), 0);
        assert_memory_equal(buf + i * slot, ref + e[i].offset, e[i].len);
    }
    /* The blocking call, in blocks. */
    assert_int_equal(nvl_loader_load_layer(l, 3, 5 * bs + 11, buf, &st), 0);
    assert_memory_equal(buf, ref + 3 * bs, 5 * bs + 11);
    assert_true(st.seconds > 0);
    assert_true(st.gbps > 0);
    free(buf);
}

#endif
