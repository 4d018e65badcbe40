/* Tests for model/src/crc32c.c: the RFC 3720 §B.4 and "123456789" check vectors, a bitwise
 * reference written here from the polynomial, and agreement of the SSE4.2 and slice-by-8 paths
 * over every length and misalignment that matters to them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "nvl_model/crc32c.h"

/* One bit at a time from the reflected polynomial: slow and obviously right. */
static uint32_t crc_bitwise(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    }
    return ~c;
}

static void test_check_value(void **state)
{
    (void)state;
    /* The catalogue's check value for CRC-32C (iSCSI). */
    assert_int_equal(nvl_crc32c(0, "123456789", 9), 0xe3069283u);
    assert_int_equal(nvl_crc32c_sw(0, "123456789", 9), 0xe3069283u);
    assert_int_equal(nvl_crc32c(0, "", 0), 0);
    assert_int_equal(nvl_crc32c(0x12345678u, "", 0), 0x12345678u);
}

static void test_rfc3720_vectors(void **state)
{
    (void)state;
    uint8_t buf[32];
    memset(buf, 0, sizeof(buf));
    assert_int_equal(nvl_crc32c(0, buf, 32), 0x8a9136aau);
    memset(buf, 0xff, sizeof(buf));
    assert_int_equal(nvl_crc32c(0, buf, 32), 0x62a8ab43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    assert_int_equal(nvl_crc32c(0, buf, 32), 0x46dd794eu);
    assert_int_equal(nvl_crc32c_sw(0, buf, 32), 0x46dd794eu);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    assert_int_equal(nvl_crc32c(0, buf, 32), 0x113fdb5cu);
    /* An iSCSI Read (10) command PDU, RFC 3720 §B.4. */
    static const uint8_t pdu[48] = {
        0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
        0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    };
    assert_int_equal(nvl_crc32c(0, pdu, sizeof(pdu)), 0xd9963a56u);
}

static void test_against_bitwise(void **state)
{
    (void)state;
    enum { N = 4096 + 64 };
    uint8_t *buf = malloc(N);
    assert_non_null(buf);
    srand(7);
    for (int i = 0; i < N; i++)
        buf[i] = (uint8_t)rand();
    /* Every start misalignment and the lengths around each unrolled loop's edges. */
    for (size_t off = 0; off < 9; off++)
        for (size_t len = 0; len < 300; len++) {
            const uint32_t want = crc_bitwise(buf + off, len);
            assert_int_equal(nvl_crc32c(0, buf + off, len), want);
            assert_int_equal(nvl_crc32c_sw(0, buf + off, len), want);
        }
    assert_int_equal(nvl_crc32c(0, buf, N), crc_bitwise(buf, N));
    free(buf);
}

static void test_chunked(void **state)
{
    (void)state;
    enum { N = 100000 };
    uint8_t *buf = malloc(N);
    assert_non_null(buf);
    for (int i = 0; i < N; i++)
        buf[i] = (uint8_t)(i * 131 + 7);
    const uint32_t whole = nvl_crc32c(0, buf, N);
    assert_int_equal(nvl_crc32c_sw(0, buf, N), whole);
    /* Fed in pieces of awkward sizes, through both implementations alternately. */
    uint32_t c = 0;
    size_t at = 0, step = 1;
    for (int k = 0; at < N; k++) {
        size_t n = step < N - at ? step : N - at;
        c = k & 1 ? nvl_crc32c_sw(c, buf + at, n) : nvl_crc32c(c, buf + at, n);
        at += n;
        step = step * 3 + 1;
    }
    assert_int_equal(c, whole);
    free(buf);
}

static void test_impl_named(void **state)
{
    (void)state;
    const char *impl = nvl_crc32c_impl();
    assert_true(!strcmp(impl, "sse4.2") || !strcmp(impl, "slice-by-8"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_value),     cmocka_unit_test(test_rfc3720_vectors),
        cmocka_unit_test(test_against_bitwise), cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_impl_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
