/* Tests for driver/src/dma.c: alignment, zeroing, pinning, whole-buffer versus per-chunk
 * mapping through a stub transport, and bus address lookup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "nvl_driver.h"

/* A transport that records mappings. With scatter set it refuses multi-page ranges with
 * -ERANGE, as no-IOMMU VFIO does for physically scattered pages, and hands out page addresses
 * in a shuffled order. */
struct stub {
    struct nvl_transport t;
    int scatter;
    int maps, unmaps;
    uint64_t next;
};

static int stub_map(struct nvl_transport *t, void *vaddr, size_t len, uint64_t *iova)
{
    struct stub *s = t->priv;

    (void)vaddr;
    if (s->scatter && len > 4096)
        return -ERANGE;
    s->maps++;
    /* Scattered: every other page is skipped, so consecutive pages are never adjacent. */
    *iova = s->next;
    s->next += s->scatter ? 2 * len : len;
    return 0;
}

static int stub_unmap(struct nvl_transport *t, void *vaddr, size_t len, uint64_t iova)
{
    struct stub *s = t->priv;

    (void)vaddr;
    (void)len;
    (void)iova;
    s->unmaps++;
    return 0;
}

static const struct nvl_transport_ops stub_ops = {
    .dma_map = stub_map,
    .dma_unmap = stub_unmap,
};

static void stub_init(struct stub *s, int scatter)
{
    memset(s, 0, sizeof(*s));
    s->t.name = "stub";
    s->t.ops = &stub_ops;
    s->t.priv = s;
    s->scatter = scatter;
    s->next = 0x40000000;
}

static void unmapped_buffer(void **state)
{
    struct nvl_dma *d = NULL;
    size_t i;

    (void)state;
    assert_int_equal(nvl_dma_create(NULL, 10000, NVL_DMA_NO_MAP, &d), 0);
    assert_non_null(d);
    assert_int_equal(d->len, 12288);
    assert_int_equal((uintptr_t)d->vaddr % 4096, 0);
    assert_null(d->transport);
    for (i = 0; i < d->len; i++)
        assert_int_equal(((uint8_t *)d->vaddr)[i], 0);
    memset(d->vaddr, 0xa5, d->len);
    nvl_dma_destroy(d);
    nvl_dma_destroy(NULL);
}

static void bad_arguments(void **state)
{
    struct nvl_dma *d = NULL;

    (void)state;
    assert_int_equal(nvl_dma_create(NULL, 4096, 0, &d), -EINVAL); /* mapping needs a transport */
    assert_int_equal(nvl_dma_create(NULL, 0, NVL_DMA_NO_MAP, &d), -EINVAL);
    assert_int_equal(nvl_dma_create(NULL, 4096, NVL_DMA_NO_MAP, NULL), -EINVAL);
}

static void contiguous_mapping(void **state)
{
    struct stub s;
    struct nvl_dma *d = NULL;

    (void)state;
    stub_init(&s, 0);
    assert_int_equal(nvl_dma_create(&s.t, 5 * 4096, 0, &d), 0);
    assert_int_equal(s.maps, 1);
    assert_true(d->contiguous);
    assert_int_equal(d->iova, 0x40000000);
    assert_int_equal(nvl_dma_iova(d, 0x1234), 0x40001234);
    assert_int_equal(d->chunk_iova[4], 0x40004000);
    assert_true(nvl_dma_contig_at(d, 0, d->len));
    assert_false(nvl_dma_contig_at(d, 0, d->len + 1));
    nvl_dma_destroy(d);
    assert_int_equal(s.unmaps, 1);
}

static void per_chunk_mapping(void **state)
{
    struct stub s;
    struct nvl_dma *d = NULL;

    (void)state;
    stub_init(&s, 1);
    assert_int_equal(nvl_dma_create(&s.t, 3 * 4096, 0, &d), 0);
    assert_int_equal(s.maps, 3);
    assert_false(d->contiguous);
    /* Pages at 0x40000000, 0x40002000, 0x40004000. */
    assert_int_equal(nvl_dma_iova(d, 0), 0x40000000);
    assert_int_equal(nvl_dma_iova(d, 4096 + 0x10), 0x40002010);
    assert_int_equal(nvl_dma_iova(d, 2 * 4096 + 0xfff), 0x40004fff);
    assert_true(nvl_dma_contig_at(d, 4096, 4096));
    assert_false(nvl_dma_contig_at(d, 4000, 200));
    nvl_dma_destroy(d);
    assert_int_equal(s.unmaps, 3);
}

static void contiguous_required(void **state)
{
    struct stub s;
    struct nvl_dma *d = NULL;
    int rc;

    (void)state;
    stub_init(&s, 1);
    /* Scattered small pages cannot make a contiguous queue. The driver then tries one
     * hugepage; whether that works depends on the machine's hugepage pool. */
    rc = nvl_dma_create(&s.t, 3 * 4096, NVL_DMA_CONTIG, &d);
    if (rc == 0) {
        assert_true(d->huge);
        assert_true(d->contiguous);
        nvl_dma_destroy(d);
    } else {
        assert_int_equal(rc, -ENOMEM);
        assert_null(d);
    }
    assert_int_equal(s.maps, s.unmaps);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(unmapped_buffer),     cmocka_unit_test(bad_arguments),
        cmocka_unit_test(contiguous_mapping),  cmocka_unit_test(per_chunk_mapping),
        cmocka_unit_test(contiguous_required),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
