/* Tests for driver/sim/src/sim_prp.c: the PRP walker on its own, over a registry, against
 * segment lists worked out by hand from NVMe 1.4 §4.3. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "sim_internal.h"

#define PG         4096u
#define DATA_PAGES 2048u

struct fx {
    struct sim_dma d;
    uint8_t *data; /* DATA_PAGES pages */
    uint64_t data_iova;
    uint64_t *list; /* 4 list pages */
    uint64_t list_iova;
    struct sim_seg segs[DATA_PAGES + 1];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    if (!f || nvl__sim_dma_init(&f->d))
        return -1;
    f->data = aligned_alloc(PG, (size_t)DATA_PAGES * PG);
    f->list = aligned_alloc(PG, 4 * PG);
    if (!f->data || !f->list ||
        nvl__sim_dma_map(&f->d, f->data, (size_t)DATA_PAGES * PG, &f->data_iova) ||
        nvl__sim_dma_map(&f->d, f->list, 4 * PG, &f->list_iova))
        return -1;
    memset(f->list, 0, 4 * PG);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    nvl__sim_dma_fini(&f->d);
    free(f->data);
    free(f->list);
    free(f);
    return 0;
}

static uint16_t walk(struct fx *f, uint64_t prp1, uint64_t prp2, uint64_t len,
                     struct sim_prp_result *r)
{
    return nvl__sim_prp_walk(&f->d, NULL, prp1, prp2, len, f->segs, DATA_PAGES + 1, r);
}

/* Data pages p0, p1, ... of the data buffer, at page `first` onwards, every other page so that
 * segments cannot merge unless the test wants them to. */
static uint64_t dpage(struct fx *f, uint32_t i)
{
    return f->data_iova + (uint64_t)i * PG;
}

static void prp1_only(void **state)
{
    struct fx *f = *state;
    struct sim_prp_result r;

    assert_int_equal(walk(f, dpage(f, 0) + 100, 0xdead000, PG - 100, &r), 0);
    assert_int_equal(r.nseg, 1);
    assert_ptr_equal(f->segs[0].p, f->data + 100);
    assert_int_equal(f->segs[0].len, PG - 100);
}

static void prp2_second_page(void **state)
{
    struct fx *f = *state;
    struct sim_prp_result r;

    /* PRP1 at offset 0x200 carries 0xe00 bytes, PRP2 the remaining 0x400. */
    assert_int_equal(walk(f, dpage(f, 4) + 0x200, dpage(f, 9), 0x1200, &r), 0);
    assert_int_equal(r.nseg, 2);
    assert_ptr_equal(f->segs[0].p, f->data + 4 * PG + 0x200);
    assert_int_equal(f->segs[0].len, 0xe00);
    assert_ptr_equal(f->segs[1].p, f->data + 9 * PG);
    assert_int_equal(f->segs[1].len, 0x400);
    /* A full second page is still PRP2 data, not a list. */
    assert_int_equal(walk(f, dpage(f, 4), dpage(f, 9), 2 * PG, &r), 0);
    assert_int_equal(r.nseg, 2);
    /* Adjacent pages merge into one segment. */
    assert_int_equal(walk(f, dpage(f, 4), dpage(f, 5), 2 * PG, &r), 0);
    assert_int_equal(r.nseg, 1);
    assert_int_equal(f->segs[0].len, 2 * PG);
}

static void list_exactly_full_page_does_not_chain(void **state)
{
    struct fx *f = *state;
    struct sim_prp_result r;
    uint32_t i;

    /* 1 + 512 pages: PRP1 plus 512 list entries, which fill the list page with no chain. */
    for (i = 0; i < 512; i++)
        f->list[i] = dpage(f, 2 + 2 * i);
    assert_int_equal(walk(f, dpage(f, 0), f->list_iova, 513ull * PG, &r), 0);
    assert_int_equal(r.nseg, 513);
    assert_ptr_equal(f->segs[512].p, f->data + (2 + 2 * 511) * (size_t)PG);
}

static void list_chains_when_more_remain(void **state)
{
    struct fx *f = *state;
    struct sim_prp_result r;
    uint32_t i;

    /* 1 + 513 pages: slots 0..510 data, slot 511 chains to list page 1 with 2 entries. */
    for (i = 0; i < 511; i++)
        f->list[i] = dpage(f, 2 + 2 * i);
    f->list[511] = f->list_iova + PG;
    f->list[512] = dpage(f, 1500);
    f->list[513] = dpage(f, 1600);
    assert_int_equal(walk(f, dpage(f, 0), f->list_iova, 514ull * PG - 100, &r), 0);
    assert_int_equal(r.nseg, 514);
    assert_ptr_equal(f->segs[512].p, f->data + 1500 * (size_t)PG);
    assert_ptr_equal(f->segs[513].p, f->data + 1600 * (size_t)PG);
    assert_int_equal(f->segs[513].len, PG - 100);
    /* The same with the chain pointer unaligned is Invalid PRP Offset. */
    f->list[511] = f->list_iova + PG + 8;
    assert_int_equal(walk(f, dpage(f, 0), f->list_iova, 514ull * PG, &r), NVME_STATUS(0, 0x13));
    assert_int_equal(r.viol, NVL_SIM_VIOL_PRP_OFFSET);
}

static void list_pointer_with_offset(void **state)
{
    struct fx *f = *state;
    struct sim_prp_result r;

    /* The list starts at slot 510: two slots left. Two entries fit without chaining. */
    f->list[510] = dpage(f, 20);
    f->list[511] = dpage(f, 22);
    assert_int_equal(walk(f, dpage(f, 0), f->list_iova + 510 * 8, 3ull * PG, &r), 0);
    assert_int_equal(r.nseg, 3);
    assert_ptr_equal(f->segs[2].p, f->data + 22 * (size_t)PG);
    /* Three entries: slot 510 data, slot 511 chains. */
    f->list[511] = f->list_iova + PG;
    f->list[512] = dpage(f, 30);
    f->list[513] = dpage(f, 32);
    assert_int_equal(walk(f, dpage(f, 0), f->list_iova + 510 * 8, 4ull * PG, &r), 0);
    assert_int_equal(r.nseg, 4);
    assert_ptr_equal(f->segs[1].p, f->data + 20 * (size_t)PG);
    assert_ptr_equal(f->segs[2].p, f->data + 30 * (size_t)PG);
    assert_ptr_equal(f->segs[3].p, f->data + 32 * (size_t)PG);
}

static void offset_rules(void **state)
{
    struct fx *f = *state;
    struct sim_prp_result r;

    /* PRP1 must be dword aligned. */
    assert_int_equal(walk(f, dpage(f, 0) + 2, 0, 512, &r), NVME_STATUS(0, 0x13));
    assert_int_equal(r.viol, NVL_SIM_VIOL_PRP_OFFSET);
    /* PRP2 as data must be page aligned. */
    assert_int_equal(walk(f, dpage(f, 0), dpage(f, 1) + 4, 2 * PG, &r), NVME_STATUS(0, 0x13));
    /* PRP2 as a list pointer must be qword aligned. */
    assert_int_equal(walk(f, dpage(f, 0), f->list_iova + 4, 3 * PG, &r), NVME_STATUS(0, 0x13));
    /* List entries must be page aligned. */
    f->list[0] = dpage(f, 1);
    f->list[1] = dpage(f, 2) + 512;
    assert_int_equal(walk(f, dpage(f, 0), f->list_iova, 3 * PG, &r), NVME_STATUS(0, 0x13));
}

static void dma_faults(void **state)
{
    struct fx *f = *state;
    struct sim_prp_result r;

    /* Beyond the data region, by one byte and by a page. */
    assert_int_equal(walk(f, dpage(f, DATA_PAGES - 1) + PG - 8, dpage(f, DATA_PAGES), 16, &r),
                     NVME_STATUS(0, 0x04));
    assert_int_equal(r.viol, NVL_SIM_VIOL_DMA);
    /* A list pointer nobody registered. */
    assert_int_equal(walk(f, dpage(f, 0), 0x10000, 3 * PG, &r), NVME_STATUS(0, 0x04));
    /* A list that ends exactly at the end of its region is fine: only entries read count. */
    f->list[4 * 512 - 2] = dpage(f, 5);
    f->list[4 * 512 - 1] = dpage(f, 7);
    assert_int_equal(walk(f, dpage(f, 0), f->list_iova + (4 * 512 - 2) * 8, 3 * PG, &r), 0);
    assert_int_equal(r.nseg, 3);
    /* From the last slot, two entries need a chain; it points past the region. */
    f->list[4 * 512 - 1] = f->list_iova + 4 * PG;
    assert_int_equal(walk(f, dpage(f, 0), f->list_iova + (4 * 512 - 1) * 8, 3 * PG, &r),
                     NVME_STATUS(0, 0x04));
    assert_int_equal(r.viol, NVL_SIM_VIOL_DMA);
}

static void zero_length_and_segment_room(void **state)
{
    struct fx *f = *state;
    struct sim_prp_result r;
    uint32_t i;

    assert_int_equal(walk(f, 0, 0, 0, &r), 0);
    assert_int_equal(r.nseg, 0);
    /* Room for fewer segments than the command needs: refused, never overrun. */
    for (i = 0; i < 8; i++)
        f->list[i] = dpage(f, 10 + 2 * i);
    assert_int_equal(
        nvl__sim_prp_walk(&f->d, NULL, dpage(f, 0), f->list_iova, 9ull * PG, f->segs, 4, &r),
        NVME_STATUS(0, 0x02));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(prp1_only, setup, teardown),
        cmocka_unit_test_setup_teardown(prp2_second_page, setup, teardown),
        cmocka_unit_test_setup_teardown(list_exactly_full_page_does_not_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(list_chains_when_more_remain, setup, teardown),
        cmocka_unit_test_setup_teardown(list_pointer_with_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(offset_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(dma_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(zero_length_and_segment_room, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
