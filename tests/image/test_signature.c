/* Tests for tools/nvload-setup/signature.c: each filesystem, partition-table and volume
 * signature that nvload-setup write refuses, placed where the format puts it (offsets from the
 * formats' documentation, e.g. ext4's superblock at 1024 with s_magic at +56), is found and
 * named; an empty drive and nvload's own image are not refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "nvl_model.h"

#define PROBE NVL_SETUP_SIGNATURE_BYTES

static uint8_t *fresh(void)
{
    uint8_t *b = calloc(1, PROBE);
    assert_non_null(b);
    return b;
}

static void expect(const uint8_t *b, uint32_t lba, const char *want)
{
    char what[160] = "";
    assert_int_equal(nvl_setup_signature(b, PROBE, lba, what, sizeof(what)), 1);
    if (!strstr(what, want))
        fail_msg("found '%s', expected '%s'", what, want);
}

static void test_each_signature(void **state)
{
    (void)state;
    static const struct {
        size_t off;
        const char *magic;
        size_t len;
        const char *what;
    } cases[] = {
        {1024 + 56, "\x53\xef", 2, "ext2/3/4"}, {0, "XFSB", 4, "XFS"},
        {65536 + 64, "_BHRfS_M", 8, "btrfs"},   {512 + 24, "LVM2 001", 8, "LVM2"},
        {4096 - 10, "SWAPSPACE2", 10, "swap"},  {4096, "\xfc\x4e\x2b\xa9", 4, "MD RAID"},
        {0, "LUKS\xba\xbe", 6, "LUKS"},         {3, "NTFS    ", 8, "NTFS"},
        {32769, "CD001", 5, "ISO 9660"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t *b = fresh();
        memcpy(b + cases[i].off, cases[i].magic, cases[i].len);
        expect(b, 512, cases[i].what);
        free(b);
    }
}

static void test_gpt_follows_the_block_size(void **state)
{
    (void)state;
    uint8_t *b = fresh();
    char what[160];
    memcpy(b + 4096, "EFI PART", 8);
    expect(b, 4096, "GPT");
    /* At byte 4096 it is not LBA 1 of a 512-byte-block drive. */
    assert_int_equal(nvl_setup_signature(b, PROBE, 512, what, sizeof(what)), 0);
    memset(b, 0, PROBE);
    memcpy(b + 512, "EFI PART", 8);
    expect(b, 512, "GPT");
    free(b);
}

static void test_mbr(void **state)
{
    (void)state;
    uint8_t *b = fresh();
    b[510] = 0x55;
    b[511] = 0xaa;
    expect(b, 512, "MBR");
    free(b);
}

static void test_clean_drives(void **state)
{
    (void)state;
    uint8_t *b = fresh();
    char what[160];
    assert_int_equal(nvl_setup_signature(b, PROBE, 512, what, sizeof(what)), 0);
    /* nvload's own header and table: no signature of another format inside them. */
    struct nvl_disk_header h;
    memset(&h, 0, sizeof(h));
    memcpy(h.magic, NVL_DISK_MAGIC, 8);
    h.version = NVL_DISK_VERSION;
    snprintf(h.model_name, sizeof(h.model_name), "%s", "a model");
    memcpy(b, &h, sizeof(h));
    struct nvl_disk_extent e = {.offset = 0, .bytes = 4096, .kind = 1, .layer = 0xffffffffu};
    memcpy(b + NVL_DISK_TABLE_OFFSET, &e, sizeof(e));
    assert_int_equal(nvl_setup_signature(b, PROBE, 4096, what, sizeof(what)), 0);
    /* A signature beyond the bytes given is not looked at. */
    memset(b, 0, PROBE);
    memcpy(b + 65536 + 64, "_BHRfS_M", 8);
    assert_int_equal(nvl_setup_signature(b, 65536, 512, what, sizeof(what)), 0);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_signature),
        cmocka_unit_test(test_gpt_follows_the_block_size),
        cmocka_unit_test(test_mbr),
        cmocka_unit_test(test_clean_drives),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
