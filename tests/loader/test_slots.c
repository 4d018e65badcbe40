/* Tests of the slots' prebuilt PRP lists (slots.c, backend.h: nvl__slot_cmd_bytes and
 * nvl__slot_prp). A slot with scattered page addresses (as in no-IOMMU mode) is described for
 * many (offset, length) commands; each PRP pair is then walked the way a controller walks it
 * (NVMe 1.4 §4.3, list pages followed by bus address) and must name exactly the slot's pages the
 * command covers, with no list entry past the end of a list page. */
#include "loader_test_util.h"

#include "backend.h"

#define PAGE      4096u
#define N_PAGES   3000u /* about six list pages */
#define LIST_PAGE (PAGE / 8)

struct fake {
    struct nvl_slot s;
    uint64_t *list_copy; /* the list as the "controller" sees it, by list page */
};

/* Page i of the slot sits at a scattered bus address; list page j likewise. */
static uint64_t data_iova(uint64_t i)
{
    return 0x100000000ull + ((i * 7919) % 10007) * PAGE;
}

static uint64_t list_iova(uint64_t j)
{
    return 0x900000000ull + (j * 31 + 5) * PAGE;
}

/* Host view of the list entry at bus address a. */
static uint64_t list_load(const struct fake *f, uint64_t a)
{
    uint64_t pages = (N_PAGES + LIST_PAGE - 1) / LIST_PAGE;

    for (uint64_t j = 0; j < pages; j++) {
        if (a >= list_iova(j) && a < list_iova(j) + PAGE) {
            assert_int_equal((a - list_iova(j)) % 8, 0);
            return f->s.prp_list[j * LIST_PAGE + (a - list_iova(j)) / 8];
        }
    }
    fail_msg("PRP list pointer 0x%llx outside the list", (unsigned long long)a);
    return 0;
}

static void fake_init(struct fake *f)
{
    uint64_t pages = (N_PAGES + LIST_PAGE - 1) / LIST_PAGE;

    memset(f, 0, sizeof(*f));
    f->s.n_pages = N_PAGES;
    f->s.bytes = (uint64_t)N_PAGES * PAGE;
    f->s.prp_list = calloc(pages * LIST_PAGE, sizeof(uint64_t));
    f->s.prp_list_page_iova = calloc(pages, sizeof(uint64_t));
    assert_non_null(f->s.prp_list);
    assert_non_null(f->s.prp_list_page_iova);
    for (uint64_t i = 0; i < N_PAGES; i++)
        f->s.prp_list[i] = data_iova(i);
    for (uint64_t j = 0; j < pages; j++)
        f->s.prp_list_page_iova[j] = list_iova(j);
}

/* Walks prp1/prp2 for len bytes as a controller would and checks each page. */
static void walk(const struct fake *f, uint64_t off, uint64_t len, uint64_t prp1, uint64_t prp2)
{
    uint64_t first = off / PAGE, last = (off + len - 1) / PAGE, n = last - first + 1;

    assert_int_equal(prp1, data_iova(first) + off % PAGE);
    if (n == 1) {
        assert_int_equal(prp2, 0);
        return;
    }
    if (n == 2) {
        assert_int_equal(prp2, data_iova(first + 1));
        return;
    }
    /* A list: n - 1 entries from prp2 on, none of them a chain entry (the last slot of a list
     * page), because the command was cut to fit. */
    for (uint64_t k = 0; k < n - 1; k++) {
        uint64_t a = prp2 + 8 * k;

        assert_true((prp2 % PAGE) / 8 + k < LIST_PAGE);
        assert_int_equal(list_load(f, a), data_iova(first + 1 + k));
    }
}

static void test_prp_walk(void **state)
{
    struct fake f;
    uint64_t s = 3, cmds = 0, cut = 0;

    (void)state;
    fake_init(&f);
    for (int i = 0; i < 200000; i++) {
        /* Offsets on 512-byte blocks; lengths up to 2 MiB (512 pages: a full list page). */
        uint64_t off = (tu_rng(&s) % (N_PAGES * 8 - 8)) * 512;
        uint64_t want = 512 * (1 + tu_rng(&s) % 4096), len, prp1, prp2;

        if (off + want > f.s.bytes)
            want = f.s.bytes - off;
        len = nvl__slot_cmd_bytes(off, want);
        assert_true(len > 0 && len <= want);
        assert_int_equal(len % 512, 0);
        cut += len < want;
        nvl__slot_prp(&f.s, off, len, &prp1, &prp2);
        walk(&f, off, len, prp1, prp2);
        cmds++;
    }
    /* Some commands had to be cut at a list page boundary, and most did not. */
    assert_true(cut > 0 && cut < cmds / 2);
    free(f.s.prp_list);
    free(f.s.prp_list_page_iova);
}

/* A command that would end exactly on the last entry of a list page is not cut. */
static void test_exact_fit(void **state)
{
    (void)state;
    /* Starting in page 0: entries 1..511 fit in list page 0 (511 entries: pages 1..511). */
    assert_int_equal(nvl__slot_cmd_bytes(0, 512 * PAGE), 512 * PAGE);
    assert_int_equal(nvl__slot_cmd_bytes(0, 513 * PAGE), 512 * PAGE);
    /* Starting in page 511: its next page's entry (512) opens list page 1. */
    assert_int_equal(nvl__slot_cmd_bytes(511 * PAGE, 100 * PAGE), 100 * PAGE);
    /* Starting in page 510: entry 511 is the last of list page 0; only two pages fit. */
    assert_int_equal(nvl__slot_cmd_bytes(510 * PAGE + 512, 100 * PAGE), 2 * PAGE - 512);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prp_walk),
        cmocka_unit_test(test_exact_fit),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
