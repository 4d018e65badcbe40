/* Tests for nvl_driver/nvme_queue.h: SQ full/empty and wrap, sqhd handling, CQ phase flips,
 * CID allocation with out-of-order completion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "nvl_driver.h"

static void sq_full_empty_wrap(void **state)
{
    struct nvme_sqe ring[4], cmd;
    uint32_t db = 0;
    struct nvme_sq sq;

    (void)state;
    memset(&cmd, 0, sizeof(cmd));
    nvme_sq_init(&sq, ring, 4, &db, 1);
    assert_int_equal(nvme_sq_free(&sq), 3); /* one slot always stays empty */
    assert_int_equal(nvme_sq_reserve(&sq, 3), 0);
    assert_int_equal(nvme_sq_reserve(&sq, 4), -1);
    cmd.cid = 7;
    assert_int_equal(nvme_sq_write(&sq, &cmd), 0);
    assert_int_equal(ring[0].cid, 7);
    assert_int_equal(nvme_sq_advance(&sq, 1), 1);
    nvme_sq_write(&sq, &cmd);
    nvme_sq_advance(&sq, 1);
    nvme_sq_write(&sq, &cmd);
    assert_int_equal(nvme_sq_advance(&sq, 1), 3);
    assert_true(nvme_sq_full(&sq));
    assert_int_equal(nvme_sq_reserve(&sq, 1), -1);
    /* The controller consumed two entries. */
    assert_int_equal(nvme_sq_update_head(&sq, 2), 0);
    assert_int_equal(nvme_sq_free(&sq), 2);
    assert_int_equal(nvme_sq_used(&sq), 1);
    cmd.cid = 9;
    assert_int_equal(nvme_sq_write(&sq, &cmd), 3);
    assert_int_equal(nvme_sq_advance(&sq, 1), 0); /* wrapped */
    assert_int_equal(ring[3].cid, 9);
    assert_ptr_equal(nvme_sq_slot(&sq, 1), &ring[1]);
    assert_int_equal(nvme_sq_used(&sq), 2);
}

static void sq_head_is_input(void **state)
{
    struct nvme_sqe ring[8];
    uint32_t db = 0;
    struct nvme_sq sq;

    (void)state;
    nvme_sq_init(&sq, ring, 8, &db, 1);
    nvme_sq_advance(&sq, 3); /* entries 0..2 outstanding, head 0, tail 3 */
    assert_int_equal(nvme_sq_update_head(&sq, 8), -1); /* beyond the ring */
    assert_int_equal(nvme_sq_update_head(&sq, 4), -1); /* past the tail */
    assert_int_equal(nvme_sq_update_head(&sq, 3), 0);  /* everything consumed */
    assert_int_equal(nvme_sq_update_head(&sq, 3), 0);  /* repeated: fine */
    assert_int_equal(nvme_sq_update_head(&sq, 2), -1); /* backwards */
    assert_int_equal(sq.head, 3);
    nvme_sq_advance(&sq, 6); /* tail 9 % 8 = 1: entries 3..7, 0 outstanding */
    assert_int_equal(sq.tail, 1);
    assert_int_equal(nvme_sq_update_head(&sq, 0), 0); /* across the wrap */
    assert_int_equal(nvme_sq_used(&sq), 1);
    assert_int_equal(nvme_sq_update_head(&sq, 2), -1);
}

static void cq_phase(void **state)
{
    struct nvme_cqe ring[3];
    uint32_t db = 0;
    struct nvme_cq cq;
    int i;

    (void)state;
    memset(ring, 0, sizeof(ring));
    nvme_cq_init(&cq, ring, 3, &db, 1);
    assert_int_equal(cq.phase, 1);
    assert_false(nvme_cq_ready(&cq));
    for (i = 0; i < 3; i++) {
        ring[i].status = nvme_cqe_status_make(0, 1);
        assert_true(nvme_cq_ready(&cq));
        assert_int_equal(nvme_cq_advance(&cq), (i + 1) % 3);
    }
    /* Wrapped: the old entries carry phase 1, which now means "old". */
    assert_int_equal(cq.phase, 0);
    assert_false(nvme_cq_ready(&cq));
    ring[0].status = nvme_cqe_status_make(NVME_SC_INTERNAL, 0);
    assert_true(nvme_cq_ready(&cq));
    assert_ptr_equal(nvme_cq_head_entry(&cq), &ring[0]);
    nvme_cq_advance(&cq);
    assert_false(nvme_cq_ready(&cq));
}

static void cid_alloc_free(void **state)
{
    uint64_t words[2];
    struct nvme_cid_map m;
    uint16_t seen[70];
    int i;

    (void)state;
    nvme_cid_map_init(&m, words, 70);
    for (i = 0; i < 70; i++) {
        seen[i] = nvme_cid_alloc(&m);
        assert_int_equal(seen[i], i);
    }
    assert_int_equal(nvme_cid_alloc(&m), NVME_CID_NONE);
    /* Completions in any order free their CIDs. */
    assert_int_equal(nvme_cid_free(&m, 65), 0);
    assert_int_equal(nvme_cid_free(&m, 3), 0);
    assert_int_equal(nvme_cid_free(&m, 3), -1);  /* duplicate completion */
    assert_int_equal(nvme_cid_free(&m, 70), -1); /* never allocated */
    assert_int_equal(nvme_cid_free(&m, 0xffff), -1);
    assert_int_equal(m.used, 68);
    assert_false(nvme_cid_busy(&m, 3));
    assert_true(nvme_cid_busy(&m, 4));
    {
        uint16_t a = nvme_cid_alloc(&m), b = nvme_cid_alloc(&m);

        assert_true((a == 3 && b == 65) || (a == 65 && b == 3));
    }
    assert_int_equal(nvme_cid_alloc(&m), NVME_CID_NONE);
}

/* A small end-to-end pass: three commands submitted, completed 2, 0, 1 with sqhd moving. */
static void out_of_order_completion(void **state)
{
    struct nvme_sqe sring[4], cmd;
    struct nvme_cqe cring[4];
    uint32_t sdb = 0, cdb = 0;
    uint64_t words[1];
    struct nvme_sq sq;
    struct nvme_cq cq;
    struct nvme_cid_map m;
    uint16_t cids[3], order[3] = {2, 0, 1}, sqhd[3] = {3, 3, 3};
    int i;

    (void)state;
    memset(cring, 0, sizeof(cring));
    memset(&cmd, 0, sizeof(cmd));
    nvme_sq_init(&sq, sring, 4, &sdb, 1);
    nvme_cq_init(&cq, cring, 4, &cdb, 1);
    nvme_cid_map_init(&m, words, 3);
    for (i = 0; i < 3; i++) {
        cids[i] = nvme_cid_alloc(&m);
        cmd.cid = cids[i];
        nvme_sq_write(&sq, &cmd);
        nvme_sq_advance(&sq, 1);
    }
    for (i = 0; i < 3; i++) {
        cring[i].cid = cids[order[i]];
        cring[i].sqhd = sqhd[i];
        cring[i].status = nvme_cqe_status_make(0, 1);
    }
    for (i = 0; i < 3; i++) {
        const struct nvme_cqe *e;

        assert_true(nvme_cq_ready(&cq));
        e = nvme_cq_head_entry(&cq);
        assert_int_equal(nvme_sq_update_head(&sq, e->sqhd), 0);
        assert_int_equal(nvme_cid_free(&m, e->cid), 0);
        nvme_cq_advance(&cq);
    }
    assert_false(nvme_cq_ready(&cq));
    assert_int_equal(m.used, 0);
    assert_int_equal(nvme_sq_free(&sq), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sq_full_empty_wrap),
        cmocka_unit_test(sq_head_is_input),
        cmocka_unit_test(cq_phase),
        cmocka_unit_test(cid_alloc_free),
        cmocka_unit_test(out_of_order_completion),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
