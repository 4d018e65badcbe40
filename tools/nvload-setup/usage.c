/* Which block devices belong to a controller, and whether the system uses any of them: mounted
 * (/proc/self/mountinfo), swap (/proc/swaps), held by device-mapper/LVM/MD (sysfs holders/),
 * or carrying the root filesystem, directly or below such a holder. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "setup.h"

#define MAX_HOLDER_DEPTH 8

/* "nvme0n1" or "nvme0c1n1" (a path of a multipath namespace); not "nvme0" or "nvme0n1p1". */
static int is_ns_name(const char *s)
{
    if (strncmp(s, "nvme", 4) != 0 || !isdigit((unsigned char)s[4]))
        return 0;
    s += 4;
    while (isdigit((unsigned char)*s))
        s++;
    if (*s == 'c') {
        s++;
        if (!isdigit((unsigned char)*s))
            return 0;
        while (isdigit((unsigned char)*s))
            s++;
    }
    if (*s++ != 'n' || !isdigit((unsigned char)*s))
        return 0;
    while (isdigit((unsigned char)*s))
        s++;
    return *s == '\0';
}

static int is_ctrl_name(const char *s)
{
    if (strncmp(s, "nvme", 4) != 0 || !isdigit((unsigned char)s[4]))
        return 0;
    for (s += 4; *s; s++)
        if (!isdigit((unsigned char)*s))
            return 0;
    return 1;
}

static uint64_t sectors_bytes(struct nvl_setup_env *e, const char *sysdir)
{
    char p[PATH_MAX], buf[32];

    if (nvl_setup_read_attr(nvl_setup_path(p, e->sys, "%s/size", sysdir), buf, sizeof(buf)))
        return 0;
    return strtoull(buf, NULL, 10) * 512; /* sysfs sizes are in 512-byte sectors */
}

static int blk_add(struct nvl_setup_env *e, struct nvl_setup_blk *blk, int n, int max,
                   const char *name, const char *sysdir, int partition)
{
    char p[PATH_MAX];

    for (int i = 0; i < n; i++)
        if (strcmp(blk[i].name, name) == 0)
            return n;
    if (n >= max)
        return n;
    struct nvl_setup_blk *b = &blk[n];
    memset(b, 0, sizeof(*b));
    snprintf(b->name, sizeof(b->name), "%s", name);
    snprintf(b->sysdir, sizeof(b->sysdir), "%s", sysdir);
    if (nvl_setup_read_attr(nvl_setup_path(p, e->sys, "%s/dev", sysdir), b->majmin,
                            sizeof(b->majmin)) != 0)
        return n; /* not a block device after all */
    b->bytes = sectors_bytes(e, sysdir);
    b->partition = partition;
    return n + 1;
}

/* Adds disk (a /sys/block entry) and its partitions. */
static int add_disk(struct nvl_setup_env *e, struct nvl_setup_blk *blk, int n, int max,
                    const char *disk)
{
    char p[PATH_MAX], sysdir[160], psysdir[160];
    struct dirent *de;
    int before = n;

    snprintf(sysdir, sizeof(sysdir), "block/%s", disk);
    n = blk_add(e, blk, n, max, disk, sysdir, 0);
    if (n == before)
        return n;
    DIR *d = opendir(nvl_setup_path(p, e->sys, "%s", sysdir));
    if (!d)
        return n;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, disk, strlen(disk)) != 0)
            continue;
        snprintf(psysdir, sizeof(psysdir), "%.95s/%.63s", sysdir, de->d_name);
        if (nvl_setup_exists(nvl_setup_path(p, e->sys, "%s/partition", psysdir)))
            n = blk_add(e, blk, n, max, de->d_name, psysdir, 1);
    }
    closedir(d);
    return n;
}

int nvl_setup_blk_list(struct nvl_setup_env *e, const char *bdf, struct nvl_setup_blk *blk, int max)
{
    char p[PATH_MAX], disk[NVL_SETUP_NAME_LEN];
    struct dirent *c, *ns;
    int n = 0;

    DIR *dc = opendir(nvl_setup_path(p, e->sys, "bus/pci/devices/%s/nvme", bdf));
    if (!dc)
        return 0; /* not bound to nvme: no block devices */
    while ((c = readdir(dc)) != NULL) {
        if (!is_ctrl_name(c->d_name))
            continue;
        DIR *dn = opendir(nvl_setup_path(p, e->sys, "bus/pci/devices/%s/nvme/%s", bdf, c->d_name));
        if (!dn)
            continue;
        while ((ns = readdir(dn)) != NULL) {
            unsigned subsys, ctrl, nsid;
            if (!is_ns_name(ns->d_name))
                continue;
            /* With native multipath the controller holds the hidden path device nvmeScCnN;
             * the block device users see is the subsystem's head, nvmeSnN. */
            if (sscanf(ns->d_name, "nvme%uc%un%u", &subsys, &ctrl, &nsid) == 3)
                snprintf(disk, sizeof(disk), "nvme%un%u", subsys, nsid);
            else
                snprintf(disk, sizeof(disk), "%.63s", ns->d_name);
            n = add_disk(e, blk, n, max, disk);
        }
        closedir(dn);
    }
    closedir(dc);
    return n;
}

/* Appends to a "; "-separated description. */
static void append(char *out, size_t len, const char *fmt, const char *a, const char *b)
{
    size_t used = strlen(out);

    if (used && used + 2 < len) {
        strcat(out, "; ");
        used += 2;
    }
    if (used < len)
        snprintf(out + used, len - used, fmt, a, b);
}

/* Mount points of the device (majmin or /dev/name as the mount source). */
static void find_mounts(struct nvl_setup_env *e, const char *name, const char *majmin, char *out,
                        size_t len, int *is_root)
{
    char p[PATH_MAX], devpath[PATH_MAX];
    char *line = NULL;
    size_t cap = 0;
    FILE *f = fopen(nvl_setup_path(p, e->proc, "self/mountinfo"), "re");

    if (!f)
        return;
    snprintf(devpath, sizeof(devpath), "/dev/%s", name);
    /* Fields: id parent major:minor root mount-point options [optional...] - fstype source ... */
    while (getline(&line, &cap, f) > 0) {
        char *save = NULL, *field[6] = {0}, *source = NULL;
        int i = 0;
        for (char *t = strtok_r(line, " \n", &save); t; t = strtok_r(NULL, " \n", &save)) {
            if (i < 6)
                field[i] = t;
            if (strcmp(t, "-") == 0 && i >= 5) {
                strtok_r(NULL, " \n", &save); /* fstype */
                source = strtok_r(NULL, " \n", &save);
                break;
            }
            i++;
        }
        if (!field[4])
            continue;
        if (strcmp(field[2], majmin) != 0 && !(source && strcmp(source, devpath) == 0))
            continue;
        int root = strcmp(field[4], "/") == 0;
        if (root)
            *is_root = 1;
        append(out, len, "mounted at %s%s", field[4], root ? " (the root filesystem)" : "");
    }
    free(line);
    fclose(f);
}

static void find_swap(struct nvl_setup_env *e, const char *name, const char *majmin, char *out,
                      size_t len)
{
    char p[PATH_MAX], devpath[PATH_MAX], file[PATH_MAX];
    char *line = NULL;
    size_t cap = 0;
    unsigned maj = 0, min = 0;
    FILE *f = fopen(nvl_setup_path(p, e->proc, "swaps"), "re");

    if (!f)
        return;
    sscanf(majmin, "%u:%u", &maj, &min);
    snprintf(devpath, sizeof(devpath), "/dev/%s", name);
    while (getline(&line, &cap, f) > 0) {
        struct stat st;
        if (sscanf(line, "%4095s", file) != 1 || strcmp(file, "Filename") == 0)
            continue;
        /* /proc/swaps names the device as it was opened; on the real system also compare the
         * device number, which catches /dev/disk/by-* and other aliases. */
        int match = strcmp(file, devpath) == 0;
        if (!match && e->real && stat(file, &st) == 0 && S_ISBLK(st.st_mode))
            match = major(st.st_rdev) == maj && minor(st.st_rdev) == min;
        if (match)
            append(out, len, "%s%s", "in use as swap", "");
    }
    free(line);
    fclose(f);
}

/* "LVM volume vg0-root", "dm-crypt volume cryptroot", "MD RAID array md0", ... */
static void holder_kind(struct nvl_setup_env *e, const char *holder, char *buf, size_t len)
{
    char p[PATH_MAX], name[128] = "", uuid[160] = "";

    if (strncmp(holder, "md", 2) == 0) {
        snprintf(buf, len, "MD RAID array %.63s", holder);
        return;
    }
    if (strncmp(holder, "dm-", 3) != 0) {
        snprintf(buf, len, "%.63s", holder);
        return;
    }
    nvl_setup_read_attr(nvl_setup_path(p, e->sys, "block/%s/dm/name", holder), name, sizeof(name));
    nvl_setup_read_attr(nvl_setup_path(p, e->sys, "block/%s/dm/uuid", holder), uuid, sizeof(uuid));
    const char *kind = strncmp(uuid, "LVM-", 4) == 0     ? "LVM volume"
                       : strncmp(uuid, "CRYPT-", 6) == 0 ? "dm-crypt volume"
                       : strncmp(uuid, "mpath-", 6) == 0 ? "multipath device"
                                                         : "device-mapper device";
    snprintf(buf, len, "%s %.127s (%.63s)", kind, name[0] ? name : holder, holder);
}

static void describe_use(struct nvl_setup_env *e, const char *name, const char *majmin,
                         const char *sysdir, char *out, size_t len, int *is_root, int depth)
{
    char p[PATH_MAX], hmajmin[16], hsysdir[160], kind[256], huse[512];
    struct dirent *de;

    find_mounts(e, name, majmin, out, len, is_root);
    find_swap(e, name, majmin, out, len);
    if (depth >= MAX_HOLDER_DEPTH)
        return;
    DIR *d = opendir(nvl_setup_path(p, e->sys, "%s/holders", sysdir));
    if (!d)
        return;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        holder_kind(e, de->d_name, kind, sizeof(kind));
        snprintf(hsysdir, sizeof(hsysdir), "block/%.63s", de->d_name);
        huse[0] = '\0';
        if (nvl_setup_read_attr(nvl_setup_path(p, e->sys, "%s/dev", hsysdir), hmajmin,
                                sizeof(hmajmin)) == 0)
            describe_use(e, de->d_name, hmajmin, hsysdir, huse, sizeof(huse), is_root, depth + 1);
        if (huse[0])
            append(out, len, "a member of %s, which is %s", kind, huse);
        else
            append(out, len, "a member of %s%s", kind, "");
    }
    closedir(d);
}

int nvl_setup_blk_usage(struct nvl_setup_env *e, struct nvl_setup_blk *blk, int n)
{
    int busy = 0;

    for (int i = 0; i < n; i++) {
        blk[i].use[0] = '\0';
        blk[i].is_root = 0;
        describe_use(e, blk[i].name, blk[i].majmin, blk[i].sysdir, blk[i].use, sizeof(blk[i].use),
                     &blk[i].is_root, 0);
        busy += blk[i].use[0] != '\0';
    }
    return busy;
}

int nvl_setup_check_unused(struct nvl_setup_env *e, const char *bdf)
{
    struct nvl_setup_blk blk[NVL_SETUP_MAX_BLK];
    int n = nvl_setup_blk_list(e, bdf, blk, NVL_SETUP_MAX_BLK);

    if (n < 0)
        return nvl_setup_fail(e, n, "cannot list the block devices of %s: %s", bdf, strerror(-n));
    if (nvl_setup_blk_usage(e, blk, n) == 0)
        return 0;

    int root = 0;
    size_t used = 0;
    used += (size_t)snprintf(e->err, sizeof(e->err),
                             "refusing %s: the system is using its drive:", bdf);
    for (int i = 0; i < n && used < sizeof(e->err); i++) {
        if (!blk[i].use[0])
            continue;
        root |= blk[i].is_root;
        used += (size_t)snprintf(e->err + used, sizeof(e->err) - used, "\n  /dev/%s is %s",
                                 blk[i].name, blk[i].use);
    }
    if (used < sizeof(e->err))
        snprintf(e->err + used, sizeof(e->err) - used, "%s",
                 root ? "\nIt holds the root filesystem: nvload cannot take this drive."
                      : "\nUnmount it, swapoff it or deactivate the volumes on it first; nvload "
                        "takes the whole drive.");
    return -EBUSY;
}

int nvl_setup_openers(struct nvl_setup_env *e, const char *path, int *pids, int max)
{
    char p[PATH_MAX], target[PATH_MAX];
    struct dirent *pd, *fd;
    int n = 0;
    DIR *dp = opendir(e->proc);

    if (!dp)
        return 0;
    while ((pd = readdir(dp)) != NULL && n < max) {
        if (!isdigit((unsigned char)pd->d_name[0]))
            continue;
        DIR *df = opendir(nvl_setup_path(p, e->proc, "%s/fd", pd->d_name));
        if (!df)
            continue; /* gone, or not ours to read */
        while ((fd = readdir(df)) != NULL) {
            ssize_t len = readlink(nvl_setup_path(p, e->proc, "%s/fd/%s", pd->d_name, fd->d_name),
                                   target, sizeof(target) - 1);
            if (len <= 0)
                continue;
            target[len] = '\0';
            if (strcmp(target, path) == 0) {
                pids[n++] = atoi(pd->d_name);
                break;
            }
        }
        closedir(df);
    }
    closedir(dp);
    return n;
}
