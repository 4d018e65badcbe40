/* Opening a file target: O_DIRECT, size, alignment. */
#include "file_target.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

int nvl__file_open(const char *path, int *fd, bool *direct)
{
    *direct = true;
    *fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
    if (*fd < 0 && errno == EINVAL) {
        /* tmpfs and a few others refuse O_DIRECT; reads still work, through the page cache. */
        *direct = false;
        *fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    return *fd < 0 ? -errno : 0;
}

int nvl__file_size(int fd, const struct stat *st, uint64_t *bytes)
{
    if (S_ISREG(st->st_mode)) {
        *bytes = (uint64_t)st->st_size;
        return 0;
    }
    if (S_ISBLK(st->st_mode))
        return ioctl(fd, BLKGETSIZE64, bytes) ? -errno : 0;
    return -EINVAL;
}

void nvl__file_alignment(int fd, const struct stat *st, uint32_t *offset_align, uint32_t *mem_align)
{
    *offset_align = 4096;
    *mem_align = 4096;
#ifdef STATX_DIOALIGN
    struct statx sx;

    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN) &&
        sx.stx_dio_offset_align) {
        *offset_align = sx.stx_dio_offset_align;
        *mem_align = sx.stx_dio_mem_align ? sx.stx_dio_mem_align : 4096;
        return;
    }
#endif
    if (S_ISBLK(st->st_mode)) {
        int lbs = 0;

        if (ioctl(fd, BLKSSZGET, &lbs) == 0 && lbs > 0) {
            *offset_align = (uint32_t)lbs;
            *mem_align = (uint32_t)lbs;
        }
    }
}
