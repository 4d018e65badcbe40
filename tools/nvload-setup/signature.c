/* Filesystem, partition-table and volume signatures at the start of a drive, so that
 * `nvload-setup write` does not overwrite a drive that holds data (unless --force). The offsets
 * are those libblkid probes (util-linux libblkid/src/{partitions,superblocks}/). Signatures that
 * live only at the end of a device (MD 0.90/1.0 superblocks, the GPT backup header) are not
 * looked for: every format that puts one there also has one at the start, or a partition table
 * that is found first. */
#include <stdio.h>
#include <string.h>

#include "image.h"

struct signature {
    const char *what;
    uint64_t offset;   /* byte offset; see lba_relative */
    const char *magic; /* bytes to match */
    size_t len;        /* of magic */
    int lba_relative;  /* offset is in logical blocks (GPT's header is at LBA 1) */
};

/* clang-format off */
static const struct signature signatures[] = {
    {"a GPT partition table", 1, "EFI PART", 8, 1},
    {"an ext2/3/4 filesystem", 1080, "\x53\xef", 2, 0},
    {"an XFS filesystem", 0, "XFSB", 4, 0},
    {"a btrfs filesystem", 65600, "_BHRfS_M", 8, 0},
    {"an LVM2 physical volume", 536, "LVM2 001", 8, 0},   /* label in sector 1 (the default) */
    {"an LVM2 physical volume", 24, "LVM2 001", 8, 0},    /* label in sector 0 */
    {"a swap area", 4086, "SWAPSPACE2", 10, 0},
    {"a swap area", 4086, "SWAP-SPACE", 10, 0},
    {"an MD RAID member (1.1 superblock)", 0, "\xfc\x4e\x2b\xa9", 4, 0},
    {"an MD RAID member (1.2 superblock)", 4096, "\xfc\x4e\x2b\xa9", 4, 0},
    {"a LUKS encrypted volume", 0, "LUKS\xba\xbe", 6, 0},
    {"a ZFS pool member", 131072, "\x0c\xb1\xba\x00\x00\x00\x00\x00", 8, 0}, /* uberblock */
    {"an NTFS filesystem", 3, "NTFS    ", 8, 0},
    {"a FAT filesystem", 82, "FAT32   ", 8, 0},
    {"a FAT filesystem", 54, "FAT1", 4, 0},
    {"an ISO 9660 filesystem", 32769, "CD001", 5, 0},
    {"a bcache device", 4120, "\xc6\x85\x73\xf6\x4e\x1a\x45\xca\x82\x65\xf5\x7f\x48\xba\x6d\x81",
     16, 0},
};
/* clang-format on */

int nvl_setup_signature(const uint8_t *buf, size_t len, uint32_t lba_size, char *what,
                        size_t what_len)
{
    for (size_t i = 0; i < sizeof(signatures) / sizeof(signatures[0]); i++) {
        const struct signature *s = &signatures[i];
        const uint64_t off = s->lba_relative ? s->offset * lba_size : s->offset;
        if (off + s->len <= len && memcmp(buf + off, s->magic, s->len) == 0) {
            snprintf(what, what_len, "%s (signature at byte %llu)", s->what,
                     (unsigned long long)off);
            return 1;
        }
    }
    /* An MBR (or a FAT/NTFS boot sector) ends its first 512 bytes with 55 AA. */
    if (len >= 512 && buf[510] == 0x55 && buf[511] == 0xaa) {
        snprintf(what, what_len, "an MBR partition table or boot sector (55 AA at byte 510)");
        return 1;
    }
    return 0;
}
