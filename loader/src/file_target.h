/* Opening a file target (file and gds backends): O_DIRECT, size, alignment. */
#ifndef NVL_LOADER_FILE_TARGET_H
#define NVL_LOADER_FILE_TARGET_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

/* Opens path read-only, O_DIRECT when the filesystem allows it (*direct says which). 0 or
 * -errno. */
int nvl__file_open(const char *path, int *fd, bool *direct);

/* Bytes in a regular file or block device; -EINVAL for anything else. */
int nvl__file_size(int fd, const struct stat *st, uint64_t *bytes);

/* O_DIRECT alignment of file offsets and of memory: what statx reports (Linux 6.1+), the logical
 * block size of a block device, or 4096 (safe on every common filesystem). */
void nvl__file_alignment(int fd, const struct stat *st, uint32_t *offset_align,
                         uint32_t *mem_align);

#endif
