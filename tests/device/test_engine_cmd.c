/* The engine's request planning (nvl_device/cmd.h), on the CPU. Every command of many random
 * requests is checked against an independent reading of the NVMe PRP rules: a walker resolves
 * PRP1/PRP2 the way a controller does (second page, or a list pointer whose entries it reads from
 * list memory, refusing to run off a list page), maps each bus address back to a buffer page
 * through a scrambled page table, and the result must be exactly the bytes the command claims,
 * with commands covering the request once, in order, at the right LBAs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "nvl_device.h"

#define PAGE       4096u
#define DATA_BASE  0x7f0000000000ull
#define LIST_BASE  0x100000000000ull
#define LIST_PITCH 0x3000ull /* list pages are not adjacent on the bus */

struct fake_buf {
    struct nvl_engine_buf b;
    uint64_t *list;      /* prp_list */
    uint64_t *list_iova; /* bus address of each list page */
    uint64_t *perm;      /* bus page number -> buffer page */
    uint64_t n_pages;
    uint64_t n_list_pages;
};

static uint64_t rng = 88172645463325252ull;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Page i of the buffer sits at bus page scramble(i): pages are deliberately not contiguous. */
static uint64_t scramble(uint64_t i, uint64_t n)
{
    return (i * 7919u) % n;
}

static void fake_buf_init(struct fake_buf *f, uint64_t n_pages)
{
    memset(f, 0, sizeof(*f));
    f->n_pages = n_pages;
    f->n_list_pages = (n_pages + 511) / 512;
    f->list = calloc(f->n_list_pages * 512, sizeof(uint64_t));
    f->list_iova = calloc(f->n_list_pages, sizeof(uint64_t));
    f->perm = calloc(n_pages, sizeof(uint64_t));
    assert_non_null(f->list);
    assert_non_null(f->list_iova);
    assert_non_null(f->perm);
    for (uint64_t i = 0; i < n_pages; i++) {
        uint64_t bp = scramble(i, n_pages);

        f->list[i] = DATA_BASE + bp * PAGE;
        f->perm[bp] = i;
    }
    for (uint64_t j = 0; j < f->n_list_pages; j++)
        f->list_iova[j] = LIST_BASE + j * LIST_PITCH;
    f->b.prp_list = f->list;
    f->b.prp_page_iova = f->list_iova;
    f->b.bytes = n_pages * PAGE;
    f->b.n_pages = n_pages;
}

static void fake_buf_fini(struct fake_buf *f)
{
    free(f->list);
    free(f->list_iova);
    free(f->perm);
}

/* Buffer byte offset of a data bus address. */
static uint64_t data_off(const struct fake_buf *f, uint64_t bus)
{
    uint64_t bp;

    assert_true(bus >= DATA_BASE);
    bp = (bus - DATA_BASE) / PAGE;
    assert_true(bp < f->n_pages);
    return f->perm[bp] * PAGE + (bus - DATA_BASE) % PAGE;
}

/* Reads the PRP list entry at bus address `bus` (qword aligned, inside a list page). */
static uint64_t list_read(const struct fake_buf *f, uint64_t bus, uint64_t *index_in_page)
{
    for (uint64_t j = 0; j < f->n_list_pages; j++) {
        if (bus >= f->list_iova[j] && bus < f->list_iova[j] + PAGE) {
            assert_int_equal((bus - f->list_iova[j]) % 8, 0);
            *index_in_page = (bus - f->list_iova[j]) / 8;
            return f->list[j * 512 + *index_in_page];
        }
    }
    fail_msg("PRP list pointer 0x%llx is not in list memory", (unsigned long long)bus);
    return 0;
}

/* A controller's view (NVMe 1.4 §4.3) of a transfer of `bytes` at PRP1/PRP2: checks that it
 * lands on buffer bytes [off, off + bytes) page after page. */
static void prp_walk(const struct fake_buf *f, uint64_t prp1, uint64_t prp2, uint32_t bytes,
                     uint64_t off)
{
    uint64_t first_len = PAGE - prp1 % PAGE, done, n_more;

    assert_int_equal(prp1 % 4, 0);
    assert_int_equal(data_off(f, prp1), off);
    if (bytes <= first_len) {
        assert_int_equal(prp2, 0);
        return;
    }
    done = first_len;
    n_more = (bytes - first_len + PAGE - 1) / PAGE;
    if (n_more == 1) {
        assert_int_equal(prp2 % PAGE, 0);
        assert_int_equal(data_off(f, prp2), off + done);
        return;
    }
    for (uint64_t k = 0; k < n_more; k++, done += PAGE) {
        uint64_t idx, e = list_read(f, prp2 + 8 * k, &idx);

        /* The last qword of a list page would be a chain pointer if more entries followed: the
         * engine promises never to need one. */
        assert_false(idx == 511 && k + 1 < n_more);
        assert_int_equal(e % PAGE, 0);
        assert_int_equal(data_off(f, e), off + done);
    }
}

/* Plans request q on buffer f and checks every command. */
static void check_req(const struct fake_buf *f, const struct nvl_engine_req *q, uint32_t lba_shift,
                      uint32_t max_cmd_shift)
{
    struct nvl_engine_plan pl = {0};
    uint64_t bytes = (uint64_t)q->nlb << lba_shift, pos = 0;

    assert_int_equal(nvl_engine_plan_req(q, &f->b, lba_shift, max_cmd_shift, &pl), 0);
    for (uint32_t i = 0; i < pl.n_cmds; i++) {
        struct nvl_engine_cmd c;
        uint64_t c_bytes = (uint64_t)1 << pl.cmd_shift, expect_off, prp1, prp2;

        nvl_engine_plan_cmd(q, &pl, &f->b, lba_shift, i, &c);
        assert_true(c.nlb >= 1 && c.nlb <= NVME_RW_NLB_MAX);
        assert_int_equal((uint64_t)c.nlb << lba_shift, c.bytes);
        assert_true(c.bytes <= c_bytes);
        assert_int_equal(c.slba, q->slba + (pos >> lba_shift));
        expect_off =
            q->flags & NVL_ENGINE_REQ_RING_DST ? (q->buf_off + pos) % f->b.bytes : q->buf_off + pos;
        assert_int_equal(c.off, expect_off);
        /* Never across a multiple of the command size in the buffer, never past its end. */
        assert_int_equal(c.off / c_bytes, (c.off + c.bytes - 1) / c_bytes);
        assert_true(c.off + c.bytes <= f->b.bytes);
        nvl_engine_cmd_prp(&f->b, c.off, c.bytes, &prp1, &prp2);
        prp_walk(f, prp1, prp2, c.bytes, c.off);
        pos += c.bytes;
    }
    assert_int_equal(pos, bytes);
}

static void test_random_requests(void **state)
{
    struct fake_buf f;

    (void)state;
    fake_buf_init(&f, 3000); /* 11.7 MiB, six list pages */
    for (int it = 0; it < 20000; it++) {
        uint32_t lba_shift = rnd() % 2 ? 9 : 12;
        uint32_t max_shift = 12 + (uint32_t)(rnd() % 10); /* 4 KiB .. 2 MiB */
        struct nvl_engine_req q;
        uint64_t room;

        memset(&q, 0, sizeof(q));
        q.buf_off = (rnd() % f.n_pages) * PAGE;
        room = f.b.bytes - q.buf_off;
        q.nlb = 1 + (uint32_t)(rnd() % (room >> lba_shift));
        if (rnd() % 4 == 0 && (room >> lba_shift) > 64)
            q.nlb = 1 + (uint32_t)(rnd() % 64); /* many small ones */
        q.slba = rnd() % (1ull << 40);
        if (rnd() % 3 == 0)
            q.cmd_shift = (uint8_t)(lba_shift + rnd() % (max_shift - lba_shift + 1));
        check_req(&f, &q, lba_shift, max_shift);
    }
    fake_buf_fini(&f);
}

static void test_ring_requests(void **state)
{
    struct fake_buf f;

    (void)state;
    fake_buf_init(&f, 1024); /* 4 MiB */
    for (int it = 0; it < 2000; it++) {
        uint32_t lba_shift = rnd() % 2 ? 9 : 12;
        uint32_t shift = 12 + (uint32_t)(rnd() % 6);
        struct nvl_engine_req q;

        memset(&q, 0, sizeof(q));
        q.flags = NVL_ENGINE_REQ_RING_DST;
        q.cmd_shift = (uint8_t)shift;
        q.buf_off = (rnd() % (f.b.bytes >> shift)) << shift;
        q.nlb = 1 + (uint32_t)(rnd() % (1u << (26 - lba_shift))); /* up to 64 MiB */
        check_req(&f, &q, lba_shift, 21);
    }
    fake_buf_fini(&f);
}

/* The layer-read shape: one big aligned request at MDTS size, 2 MiB commands at most. */
static void test_layer_request(void **state)
{
    struct fake_buf f;
    struct nvl_engine_req q;
    struct nvl_engine_plan pl = {0};

    (void)state;
    fake_buf_init(&f, 171264); /* 669 MiB */
    memset(&q, 0, sizeof(q));
    q.nlb = (uint32_t)((669ull << 20) >> 9);
    q.slba = 12345;
    check_req(&f, &q, 9, 17);
    assert_int_equal(nvl_engine_plan_req(&q, &f.b, 9, 17, &pl), 0);
    assert_int_equal(pl.n_cmds, 669u * 8u);
    check_req(&f, &q, 9, 21);
    fake_buf_fini(&f);
}

static void test_invalid_requests(void **state)
{
    struct fake_buf f;
    struct nvl_engine_plan pl = {0};
    struct nvl_engine_req q;

    (void)state;
    fake_buf_init(&f, 16);
    memset(&q, 0, sizeof(q));
    q.nlb = 8;
    assert_int_equal(nvl_engine_plan_req(&q, &f.b, 9, 17, &pl), 0);
    assert_int_equal(nvl_engine_plan_req(&q, NULL, 9, 17, &pl), -1); /* no such buffer */
    q.nlb = 0;
    assert_int_equal(nvl_engine_plan_req(&q, &f.b, 9, 17, &pl), -1);
    q.nlb = 8;
    q.buf_off = 512; /* not page aligned */
    assert_int_equal(nvl_engine_plan_req(&q, &f.b, 9, 17, &pl), -1);
    q.buf_off = 15 * PAGE;
    q.nlb = 9; /* one block past the end */
    assert_int_equal(nvl_engine_plan_req(&q, &f.b, 9, 17, &pl), -1);
    q.nlb = 8;
    assert_int_equal(nvl_engine_plan_req(&q, &f.b, 9, 17, &pl), 0);
    q.cmd_shift = 18; /* above the engine's command size */
    assert_int_equal(nvl_engine_plan_req(&q, &f.b, 9, 17, &pl), -1);
    q.cmd_shift = 8; /* below the block size */
    assert_int_equal(nvl_engine_plan_req(&q, &f.b, 9, 17, &pl), -1);
    q.cmd_shift = 0;
    assert_int_equal(nvl_engine_plan_req(&q, &f.b, 13, 17, &pl), -1); /* 8 KiB blocks */
    q.flags = NVL_ENGINE_REQ_RING_DST;
    q.buf_off = 4 * PAGE;
    q.cmd_shift = 15; /* ring offset not a multiple of the command size */
    assert_int_equal(nvl_engine_plan_req(&q, &f.b, 9, 17, &pl), -1);
    q.buf_off = 16 * PAGE; /* ring offset at the end */
    q.cmd_shift = 12;
    assert_int_equal(nvl_engine_plan_req(&q, &f.b, 9, 17, &pl), -1);
    fake_buf_fini(&f);
}

/* The Read SQE, read back as the bytes a controller fetches (NVMe 1.4 Figure 105, §6.9). */
static void test_sqe_read(void **state)
{
    struct nvme_sqe sqe;
    uint8_t raw[64];
    uint64_t v;
    uint32_t d;

    (void)state;
    memset(&sqe, 0xa5, sizeof(sqe));
    nvl_engine_sqe_read(&sqe, 0x1234, 7, 0x0102030405060708ull, 256, 0xaaaa000ull, 0xbbbb008ull);
    memcpy(raw, &sqe, sizeof(raw));
    assert_int_equal(raw[0], 0x02);
    assert_int_equal(raw[1], 0);
    assert_int_equal(raw[2] | raw[3] << 8, 0x1234);
    memcpy(&d, raw + 4, 4);
    assert_int_equal(d, 7);
    memcpy(&v, raw + 16, 8);
    assert_int_equal(v, 0); /* no metadata */
    memcpy(&v, raw + 24, 8);
    assert_int_equal(v, 0xaaaa000ull);
    memcpy(&v, raw + 32, 8);
    assert_int_equal(v, 0xbbbb008ull);
    memcpy(&v, raw + 40, 8);
    assert_int_equal(v, 0x0102030405060708ull);
    memcpy(&d, raw + 48, 4);
    assert_int_equal(d, 255); /* 0's based */
    for (int i = 52; i < 64; i++)
        assert_int_equal(raw[i], 0);
}

static void test_status_words(void **state)
{
    uint32_t st = nvl_engine_st_make(NVL_ENGINE_ST_NVME, NVME_STATUS(NVME_SCT_MEDIA_ERROR, 0x81));

    (void)state;
    assert_int_equal(nvl_engine_st_kind(st), NVL_ENGINE_ST_NVME);
    assert_int_equal(nvl_engine_st_nvme(st), 0x0281);
    assert_string_equal(nvl_engine_st_str(st), "nvme");
    st = nvl_engine_st_make(NVL_ENGINE_ST_TIMEOUT, 0);
    assert_int_equal(nvl_engine_st_nvme(st), 0);
    assert_string_equal(nvl_engine_st_str(st), "timeout");
    assert_string_equal(nvl_engine_st_str(0), "ok");
    assert_string_equal(nvl_engine_st_str(nvl_engine_st_make(NVL_ENGINE_ST_CFS, 3)), "cfs");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_requests), cmocka_unit_test(test_ring_requests),
        cmocka_unit_test(test_layer_request),   cmocka_unit_test(test_invalid_requests),
        cmocka_unit_test(test_sqe_read),        cmocka_unit_test(test_status_words),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
