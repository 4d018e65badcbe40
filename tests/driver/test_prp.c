/* Tests for driver/src/prp.c. Every expected PRP entry is worked out by hand from NVMe 1.4
 * §4.3 for a 4 KiB memory page: PRP1 carries the offset, PRP2 is the second page or a list
 * pointer, a full list page's last entry chains to the next list page. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nvl_driver.h"

#define PG     4096u
#define BASE   0x10000000ull /* bus address of the test buffer */
#define LISTIO 0xabc000ull   /* bus address of the first list page */

struct fixture {
    struct nvl_dma buf; /* 4 MiB + a page, contiguous at BASE */
    uint64_t *lists;    /* 4 list pages */
    struct nvl_prp_list_mem mem;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    f->buf.len = (4u << 20) + PG;
    f->buf.chunk = PG;
    f->buf.n_chunks = f->buf.len / PG;
    f->buf.iova = BASE;
    f->buf.contiguous = 1;
    f->lists = aligned_alloc(PG, 4 * PG);
    memset(f->lists, 0xee, 4 * PG);
    f->mem.vaddr = f->lists;
    f->mem.iova = LISTIO;
    f->mem.pages = 4;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    free(f->lists);
    free(f);
    return 0;
}

static void list_pages_count(void **state)
{
    (void)state;
    assert_int_equal(nvl_prp_list_pages(0, PG, PG), 0);
    assert_int_equal(nvl_prp_list_pages(0, 2 * PG, PG), 0);
    assert_int_equal(nvl_prp_list_pages(4, 2 * PG, PG), 1);       /* spills into a 3rd page */
    assert_int_equal(nvl_prp_list_pages(0, 513 * PG, PG), 1);     /* 512 entries: one full page */
    assert_int_equal(nvl_prp_list_pages(0, 514 * PG, PG), 2);     /* 513 entries: chain */
    assert_int_equal(nvl_prp_list_pages(0, 1023 * PG, PG), 2);    /* 1022 = 511 + 511 */
    assert_int_equal(nvl_prp_list_pages(0, 1024 * PG, PG), 2);    /* 1023 = 511 + 512 */
    assert_int_equal(nvl_prp_list_pages(0, 1025 * PG, PG), 3);    /* 1024 entries */
    assert_int_equal(nvl_prp_list_pages(100, 512 * PG, PG), 1);   /* 513 pages, 512 entries */
    assert_int_equal(nvl_prp_list_pages(0, 3 * 65536, 65536), 1); /* 64 KiB pages */
}

static void prp1_only(void **state)
{
    struct fixture *f = *state;
    uint64_t p1 = 1, p2 = 1;

    assert_int_equal(nvl_prp_build(&f->buf, 0, PG, PG, NULL, &p1, &p2), 0);
    assert_int_equal(p1, BASE);
    assert_int_equal(p2, 0);
    /* Offset 0x100, 0xf00 bytes: ends exactly at the page end. */
    assert_int_equal(nvl_prp_build(&f->buf, 0x100, 0xf00, PG, NULL, &p1, &p2), 0);
    assert_int_equal(p1, BASE + 0x100);
    assert_int_equal(p2, 0);
    assert_int_equal(nvl_prp_build(&f->buf, 0x204, 512, PG, NULL, &p1, &p2), 0);
    assert_int_equal(p1, BASE + 0x204);
    assert_int_equal(p2, 0);
}

static void prp1_prp2(void **state)
{
    struct fixture *f = *state;
    uint64_t p1, p2;

    assert_int_equal(nvl_prp_build(&f->buf, 0, 2 * PG, PG, NULL, &p1, &p2), 0);
    assert_int_equal(p1, BASE);
    assert_int_equal(p2, BASE + 0x1000);
    /* Offset 0x100, one page long: crosses into the second page. */
    assert_int_equal(nvl_prp_build(&f->buf, 0x100, PG, PG, NULL, &p1, &p2), 0);
    assert_int_equal(p1, BASE + 0x100);
    assert_int_equal(p2, BASE + 0x1000);
    /* Starting in page 3 of the buffer. */
    assert_int_equal(nvl_prp_build(&f->buf, 3 * PG + 0x800, PG, PG, NULL, &p1, &p2), 0);
    assert_int_equal(p1, BASE + 0x3800);
    assert_int_equal(p2, BASE + 0x4000);
}

static void short_list(void **state)
{
    struct fixture *f = *state;
    uint64_t p1, p2;

    assert_int_equal(nvl_prp_build(&f->buf, 0, 3 * PG, PG, &f->mem, &p1, &p2), 0);
    assert_int_equal(p1, BASE);
    assert_int_equal(p2, LISTIO);
    assert_int_equal(f->lists[0], BASE + 0x1000);
    assert_int_equal(f->lists[1], BASE + 0x2000);
    assert_int_equal(f->lists[2], 0xeeeeeeeeeeeeeeeeull); /* untouched */
    /* Unaligned start, 8 KiB: touches three pages. */
    assert_int_equal(nvl_prp_build(&f->buf, 0x10, 2 * PG, PG, &f->mem, &p1, &p2), 0);
    assert_int_equal(p1, BASE + 0x10);
    assert_int_equal(p2, LISTIO);
    assert_int_equal(f->lists[0], BASE + 0x1000);
    assert_int_equal(f->lists[1], BASE + 0x2000);
}

static void full_list_page_no_chain(void **state)
{
    struct fixture *f = *state;
    uint64_t p1, p2;

    /* 2 MiB at offset 0x200: 513 pages, 512 list entries, exactly one list page. */
    assert_int_equal(nvl_prp_build(&f->buf, 0x200, 2u << 20, PG, &f->mem, &p1, &p2), 0);
    assert_int_equal(p1, BASE + 0x200);
    assert_int_equal(p2, LISTIO);
    assert_int_equal(f->lists[0], BASE + 0x1000);
    assert_int_equal(f->lists[510], BASE + 511ull * PG);
    assert_int_equal(f->lists[511], BASE + 512ull * PG); /* data, not a chain pointer */
    assert_int_equal(f->lists[512], 0xeeeeeeeeeeeeeeeeull);
}

static void chained_lists(void **state)
{
    struct fixture *f = *state;
    struct nvl_prp_list_mem one = f->mem;
    uint64_t p1, p2;

    /* 514 pages: 513 entries. Page 0 holds 511 data entries and a pointer to page 1, which
     * holds the last two. */
    assert_int_equal(nvl_prp_build(&f->buf, 0, 514 * PG, PG, &f->mem, &p1, &p2), 0);
    assert_int_equal(p1, BASE);
    assert_int_equal(p2, LISTIO);
    assert_int_equal(f->lists[0], BASE + 1 * PG);
    assert_int_equal(f->lists[510], BASE + 511ull * PG);
    assert_int_equal(f->lists[511], LISTIO + PG);
    assert_int_equal(f->lists[512], BASE + 512ull * PG);
    assert_int_equal(f->lists[513], BASE + 513ull * PG);
    assert_int_equal(f->lists[514], 0xeeeeeeeeeeeeeeeeull);
    /* 1025 pages (4 MiB + 4 KiB): 1024 entries over three list pages (511 + 511 + 2). */
    assert_int_equal(nvl_prp_build(&f->buf, 0, 1025 * PG, PG, &f->mem, &p1, &p2), 0);
    assert_int_equal(f->lists[511], LISTIO + PG);
    assert_int_equal(f->lists[512 + 510], BASE + 1022ull * PG);
    assert_int_equal(f->lists[512 + 511], LISTIO + 2 * PG);
    assert_int_equal(f->lists[1024], BASE + 1023ull * PG);
    assert_int_equal(f->lists[1025], BASE + 1024ull * PG);
    /* Not enough list pages. */
    one.pages = 1;
    assert_int_equal(nvl_prp_build(&f->buf, 0, 514 * PG, PG, &one, &p1, &p2), -ENOSPC);
    assert_int_equal(nvl_prp_build(&f->buf, 0, 3 * PG, PG, NULL, &p1, &p2), -EINVAL);
}

static void bad_input(void **state)
{
    struct fixture *f = *state;
    uint64_t p1, p2;

    assert_int_equal(nvl_prp_build(&f->buf, 2, 512, PG, NULL, &p1, &p2), -EINVAL); /* dword */
    assert_int_equal(nvl_prp_build(&f->buf, 0, 0, PG, NULL, &p1, &p2), -EINVAL);
    assert_int_equal(nvl_prp_build(&f->buf, f->buf.len - 512, 1024, PG, NULL, &p1, &p2), -EINVAL);
    assert_int_equal(nvl_prp_build(&f->buf, 0, 512, 3000, NULL, &p1, &p2), -EINVAL);
    assert_int_equal(nvl_prp_build(NULL, 0, 512, PG, NULL, &p1, &p2), -EINVAL);
}

/* A buffer whose 4 KiB chunks are scattered (no-IOMMU without hugepages). */
static void scattered_chunks(void **state)
{
    struct fixture *f = *state;
    uint64_t table[4] = {0x5000, 0x9000, 0x2000, 0x7000};
    struct nvl_dma d;
    uint64_t p1, p2;

    memset(&d, 0, sizeof(d));
    d.len = 4 * PG;
    d.chunk = PG;
    d.n_chunks = 4;
    d.chunk_iova = table;
    d.iova = table[0];
    assert_int_equal(nvl_prp_build(&d, 0x10, 4 * PG - 0x10, PG, &f->mem, &p1, &p2), 0);
    assert_int_equal(p1, 0x5010);
    assert_int_equal(p2, LISTIO);
    assert_int_equal(f->lists[0], 0x9000);
    assert_int_equal(f->lists[1], 0x2000);
    assert_int_equal(f->lists[2], 0x7000);
    assert_int_equal(nvl_prp_build(&d, 2 * PG + 8, PG, PG, NULL, &p1, &p2), 0);
    assert_int_equal(p1, 0x2008);
    assert_int_equal(p2, 0x7000);
    /* A controller page larger than the chunks cannot be described. */
    assert_int_equal(nvl_prp_build(&d, 0, PG, 2 * PG, NULL, &p1, &p2), -EINVAL);
}

static void page_table_builder(void **state)
{
    struct fixture *f = *state;
    uint64_t pages[3] = {0x40000, 0x13000, 0x88000};
    uint64_t p1, p2;

    assert_int_equal(nvl_prp_build_pages(pages, 3, 0x400, 2 * PG, PG, &f->mem, &p1, &p2), 0);
    assert_int_equal(p1, 0x40400);
    assert_int_equal(p2, LISTIO);
    assert_int_equal(f->lists[0], 0x13000);
    assert_int_equal(f->lists[1], 0x88000);
    assert_int_equal(nvl_prp_build_pages(pages, 3, 0, 2 * PG, PG, NULL, &p1, &p2), 0);
    assert_int_equal(p2, 0x13000);
    /* More data than pages, unaligned page, offset beyond the page. */
    assert_int_equal(nvl_prp_build_pages(pages, 1, 0, 2 * PG, PG, NULL, &p1, &p2), -EINVAL);
    pages[1] = 0x13100;
    assert_int_equal(nvl_prp_build_pages(pages, 3, 0, 2 * PG, PG, NULL, &p1, &p2), -EINVAL);
    assert_int_equal(nvl_prp_build_pages(pages, 3, PG, 16, PG, NULL, &p1, &p2), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(list_pages_count),
        cmocka_unit_test_setup_teardown(prp1_only, setup, teardown),
        cmocka_unit_test_setup_teardown(prp1_prp2, setup, teardown),
        cmocka_unit_test_setup_teardown(short_list, setup, teardown),
        cmocka_unit_test_setup_teardown(full_list_page_no_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(chained_lists, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(scattered_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(page_table_builder, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
