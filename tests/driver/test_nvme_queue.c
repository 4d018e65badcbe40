/* Tests for nvl_driver/nvme_queue.h: SQ full/empty and wrap, sqhd handling, CQ phase flips
 * (one and n at a time), CID allocation with out-of-order completion, and the word-at-a-time CID
 * helpers against a one-flag-per-CID model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
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

/* nvme_cq_advance_n against n single steps, for every depth, start and n <= depth. */
static void cq_advance_n(void **state)
{
    (void)state;
    for (uint32_t depth = 2; depth <= 9; depth++) {
        for (uint32_t start = 0; start < depth; start++) {
            for (uint32_t n = 0; n <= depth; n++) {
                struct nvme_cq a = {.depth = depth, .head = start, .phase = 1};
                struct nvme_cq b = a;

                for (uint32_t i = 0; i < n; i++)
                    nvme_cq_advance(&a);
                assert_int_equal(nvme_cq_advance_n(&b, n), a.head);
                assert_int_equal(b.head, a.head);
                assert_int_equal(b.phase, a.phase);
            }
        }
    }
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void nth_bit(void **state)
{
    (void)state;
    for (int t = 0; t < 20000; t++) {
        uint64_t v = rng() & rng(); /* sparse and dense words */
        uint32_t n = 0;

        if (t % 3 == 0)
            v = rng();
        for (uint32_t bit = 0; bit < 64; bit++) {
            if (!((v >> bit) & 1))
                continue;
            assert_int_equal(nvme__nth_bit64(v, n), bit);
            n++;
        }
        assert_int_equal(nvme__popc64(v), n);
    }
}

/* A 70-CID map (a partial last word) through the word helpers, by hand. */
static void cid_word_by_hand(void **state)
{
    uint64_t words[2];
    struct nvme_cid_map m;
    uint32_t w = 99;

    (void)state;
    nvme_cid_map_init(&m, words, 70);
    assert_int_equal(nvme_cid_alloc_word(&m, 0, &w), 0);
    assert_true(nvme_cid_alloc_word(&m, 5, &w) == 0x1f);
    assert_int_equal(w, 0);
    assert_true(nvme_cid_alloc_word(&m, 64, &w) == ~(uint64_t)0x1f); /* the rest of word 0 */
    assert_true(nvme_cid_alloc_word(&m, 64, &w) == 0x3f);            /* CIDs 64..69 only */
    assert_int_equal(w, 1);
    assert_int_equal(m.used, 70);
    assert_int_equal(nvme_cid_alloc(&m), NVME_CID_NONE);
    assert_int_equal(nvme_cid_alloc_word(&m, 1, &w), 0);
    /* Frees, with spurious bits: already free, beyond count, and a word beyond the map. */
    assert_true(nvme_cid_free_word(&m, 0, (1ull << 3) | (1ull << 63)) == 0);
    assert_true(nvme_cid_free_word(&m, 0, 1ull << 3) == 1ull << 3);
    assert_true(nvme_cid_free_word(&m, 1, (1ull << 2) | (1ull << 6)) == 1ull << 6);
    assert_true(nvme_cid_free_word(&m, 2, 1) == 1);
    assert_int_equal(m.used, 67);
    assert_false(nvme_cid_busy(&m, 3));
    assert_false(nvme_cid_busy(&m, 63));
    assert_false(nvme_cid_busy(&m, 66));
    /* The search starts at the hint (word 1, the last one taken from) and wraps. */
    assert_true(nvme_cid_alloc_word(&m, 64, &w) == 1ull << 2);
    assert_int_equal(w, 1);
    assert_int_equal(nvme_cid_of(w, 2), 66);
    assert_true(nvme_cid_alloc_word(&m, 1, &w) == 1ull << 3);
    assert_int_equal(w, 0);
    assert_int_equal(nvme_cid_alloc(&m), 63);
}

/* Random mixes of word and single-CID calls, checked against one flag per CID. */
static void cid_word_model(void **state)
{
    static const uint32_t counts[] = {1, 31, 64, 65, 128, 200, 1024};

    (void)state;
    for (unsigned c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
        uint32_t count = counts[c], nwords = nvme_cid_map_words(count), used = 0;
        uint64_t words[16];
        bool busy[1024] = {false};
        struct nvme_cid_map m;

        nvme_cid_map_init(&m, words, count);
        for (int step = 0; step < 4000; step++) {
            uint32_t op = (uint32_t)(rng() % 4);

            if (op == 0) {
                /* Word allocation: the lowest free bits of the first word with any. */
                uint32_t max = 1 + (uint32_t)(rng() % 64), hint = m.hint, w = 0, want = 0;
                uint64_t got = nvme_cid_alloc_word(&m, max, &w), expect = 0;

                for (uint32_t k = 0; k < nwords && !want; k++) {
                    uint32_t wk = (hint + k) % nwords;

                    for (uint32_t b = 0; b < 64 && wk * 64 + b < count; b++) {
                        if (!busy[wk * 64 + b] && want < max) {
                            expect |= 1ull << b;
                            want++;
                        }
                    }
                    if (want) {
                        assert_int_equal(w, wk);
                        break;
                    }
                }
                assert_true(got == expect);
                for (uint32_t b = 0; b < 64; b++) {
                    if ((got >> b) & 1) {
                        assert_false(busy[w * 64 + b]);
                        busy[w * 64 + b] = true;
                        used++;
                    }
                }
            } else if (op == 1) {
                /* Word free of a random mask: busy bits are freed, the rest come back. */
                uint32_t w = (uint32_t)(rng() % (nwords + 1));
                uint64_t mask = rng() & rng(), spurious = 0;

                for (uint32_t b = 0; b < 64; b++) {
                    uint32_t cid = w * 64 + b;

                    if (!((mask >> b) & 1))
                        continue;
                    if (cid < count && busy[cid]) {
                        busy[cid] = false;
                        used--;
                    } else {
                        spurious |= 1ull << b;
                    }
                }
                assert_true(nvme_cid_free_word(&m, w, mask) == spurious);
            } else if (op == 2) {
                uint16_t cid = nvme_cid_alloc(&m);

                if (used == count) {
                    assert_int_equal(cid, NVME_CID_NONE);
                } else {
                    assert_true(cid < count);
                    assert_false(busy[cid]);
                    busy[cid] = true;
                    used++;
                }
            } else {
                uint16_t cid = (uint16_t)(rng() % (count + 2));

                assert_int_equal(nvme_cid_free(&m, cid), cid < count && busy[cid] ? 0 : -1);
                if (cid < count && busy[cid]) {
                    busy[cid] = false;
                    used--;
                }
            }
            assert_int_equal(m.used, used);
            for (uint32_t i = 0; i < count; i++)
                assert_int_equal(nvme_cid_busy(&m, (uint16_t)i), busy[i]);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sq_full_empty_wrap),
        cmocka_unit_test(sq_head_is_input),
        cmocka_unit_test(cq_phase),
        cmocka_unit_test(cid_alloc_free),
        cmocka_unit_test(out_of_order_completion),
        cmocka_unit_test(cq_advance_n),
        cmocka_unit_test(nth_bit),
        cmocka_unit_test(cid_word_by_hand),
        cmocka_unit_test(cid_word_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
