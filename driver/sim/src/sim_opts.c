/* Defaults, parsing and checking of the software controller's options. */
#include "nvl_sim/opts.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void nvl_sim_opts_init(struct nvl_sim_opts *o)
{
    memset(o, 0, sizeof(*o));
    snprintf(o->name, sizeof(o->name), "sim");
    o->backing = NVL_SIM_BACKING_MEM;
    o->direct = 1;
    o->lba_size = 512;
    o->mdts = 5;
    o->mqes = 1023;
    o->max_io_queues = 16;
    o->dstrd = 0;
    o->cap_to = 2;
    o->threads = 1;
    o->ready_delay_us = 1000;
    o->shutdown_delay_us = 1000;
    o->idle_us = 200;
    o->seed = 0x6e766c73696dull;
    snprintf(o->serial, sizeof(o->serial), "NVLSIM0001");
    snprintf(o->model, sizeof(o->model), "nvload software controller");
}

static int opts_fail(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int opts_fail(char *err, size_t err_len, const char *fmt, ...)
{
    va_list ap;

    if (err && err_len) {
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

/* A decimal number with an optional fraction, then a unit from `units` (longest match first in
 * the table order), scaled by the unit's factor. An empty unit string means "no unit". */
struct unit {
    const char *name;
    double factor;
};

static int parse_scaled(const char *s, const struct unit *units, size_t n, double *out)
{
    char *end;
    double v;
    size_t i;

    errno = 0;
    v = strtod(s, &end);
    if (end == s || errno || !isfinite(v) || v < 0)
        return -EINVAL;
    for (i = 0; i < n; i++) {
        if (!strcasecmp(end, units[i].name)) {
            *out = v * units[i].factor;
            return 0;
        }
    }
    return -EINVAL;
}

static const struct unit size_units[] = {
    {"", 1.0},
    {"b", 1.0},
    {"k", 1024.0},
    {"kib", 1024.0},
    {"m", 1048576.0},
    {"mib", 1048576.0},
    {"g", 1073741824.0},
    {"gib", 1073741824.0},
    {"t", 1099511627776.0},
    {"tib", 1099511627776.0},
};

static const struct unit bw_units[] = {
    {"", 1.0},     {"b/s", 1.0},    {"kb/s", 1e3},        {"mb/s", 1e6},
    {"gb/s", 1e9}, {"kib/s", 1024}, {"mib/s", 1048576.0}, {"gib/s", 1073741824.0},
};

static const struct unit time_units[] = {
    {"ns", 1.0},
    {"us", 1e3},
    {"ms", 1e6},
    {"s", 1e9},
};

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (*s == '-' || *s == '\0')
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 0);
    if (errno || *end != '\0' || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

static int copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);

    if (n >= cap)
        return -EINVAL;
    memcpy(dst, src, n + 1);
    return 0;
}

/* Applies one key=value item. */
static int opts_apply(struct nvl_sim_opts *o, const char *key, const char *val, int *mode_set)
{
    uint64_t u;
    double d;

    if (!strcmp(key, "file") || !strcmp(key, "path")) {
        if (copy_str(o->path, sizeof(o->path), val) || !*val)
            return -EINVAL;
        if (!*mode_set)
            o->backing = NVL_SIM_BACKING_FILE;
        return 0;
    }
    if (!strcmp(key, "mode")) {
        if (!strcmp(val, "mem"))
            o->backing = NVL_SIM_BACKING_MEM;
        else if (!strcmp(val, "file"))
            o->backing = NVL_SIM_BACKING_FILE;
        else if (!strcmp(val, "null"))
            o->backing = NVL_SIM_BACKING_NULL;
        else
            return -EINVAL;
        *mode_set = 1;
        return 0;
    }
    if (!strcmp(key, "name"))
        return copy_str(o->name, sizeof(o->name), val);
    if (!strcmp(key, "sn"))
        return copy_str(o->serial, sizeof(o->serial), val);
    if (!strcmp(key, "mn"))
        return copy_str(o->model, sizeof(o->model), val);
    if (!strcmp(key, "size")) {
        if (parse_scaled(val, size_units, sizeof(size_units) / sizeof(size_units[0]), &d) ||
            d > 18e18)
            return -EINVAL;
        o->ns_bytes = (uint64_t)d;
        return 0;
    }
    if (!strcmp(key, "bw")) {
        if (parse_scaled(val, bw_units, sizeof(bw_units) / sizeof(bw_units[0]), &d) || d > 1e15)
            return -EINVAL;
        o->bw_bytes_per_s = (uint64_t)(d + 0.5);
        return 0;
    }
    if (!strcmp(key, "lat")) {
        if (parse_scaled(val, time_units, sizeof(time_units) / sizeof(time_units[0]), &d) ||
            d > 1e12)
            return -EINVAL;
        o->lat_ns = (uint64_t)(d + 0.5);
        return 0;
    }
    if (!strcmp(key, "ro")) {
        if (parse_u64(val, 1, &u))
            return -EINVAL;
        o->read_only = (int)u;
        return 0;
    }
    if (!strcmp(key, "direct")) {
        if (parse_u64(val, 1, &u))
            return -EINVAL;
        o->direct = (int)u;
        return 0;
    }
    if (!strcmp(key, "lba")) {
        if (parse_u64(val, 1u << 20, &u))
            return -EINVAL;
        o->lba_size = (uint32_t)u;
        return 0;
    }
    if (!strcmp(key, "mdts")) {
        if (parse_u64(val, 255, &u))
            return -EINVAL;
        o->mdts = (uint8_t)u;
        return 0;
    }
    if (!strcmp(key, "mqes")) {
        if (parse_u64(val, 65535, &u))
            return -EINVAL;
        o->mqes = (uint16_t)u;
        return 0;
    }
    if (!strcmp(key, "queues")) {
        if (parse_u64(val, 65535, &u))
            return -EINVAL;
        o->max_io_queues = (uint16_t)u;
        return 0;
    }
    if (!strcmp(key, "dstrd")) {
        if (parse_u64(val, 15, &u))
            return -EINVAL;
        o->dstrd = (uint8_t)u;
        return 0;
    }
    if (!strcmp(key, "to")) {
        if (parse_u64(val, 255, &u))
            return -EINVAL;
        o->cap_to = (uint8_t)u;
        return 0;
    }
    if (!strcmp(key, "threads")) {
        if (parse_u64(val, 1024, &u))
            return -EINVAL;
        o->threads = (uint32_t)u;
        return 0;
    }
    if (!strcmp(key, "ready_us")) {
        if (parse_u64(val, UINT32_MAX, &u))
            return -EINVAL;
        o->ready_delay_us = (uint32_t)u;
        return 0;
    }
    if (!strcmp(key, "shutdown_us")) {
        if (parse_u64(val, UINT32_MAX, &u))
            return -EINVAL;
        o->shutdown_delay_us = (uint32_t)u;
        return 0;
    }
    if (!strcmp(key, "idle_us")) {
        if (parse_u64(val, UINT32_MAX, &u))
            return -EINVAL;
        o->idle_us = (uint32_t)u;
        return 0;
    }
    if (!strcmp(key, "seed")) {
        if (parse_u64(val, UINT64_MAX, &u))
            return -EINVAL;
        o->seed = u;
        return 0;
    }
    return -ENOENT;
}

int nvl_sim_opts_parse(struct nvl_sim_opts *o, const char *spec, char *err, size_t err_len)
{
    char *copy, *item, *save = NULL;
    int mode_set = 0;
    int ret = 0;

    if (!o || !spec)
        return opts_fail(err, err_len, "no options");
    if (!strchr(spec, '=')) {
        /* A bare path: the common `--sim FILE` case. */
        if (!*spec || copy_str(o->path, sizeof(o->path), spec))
            return opts_fail(err, err_len, "bad path");
        o->backing = NVL_SIM_BACKING_FILE;
        return 0;
    }
    copy = strdup(spec);
    if (!copy)
        return -ENOMEM;
    for (item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        int r;

        if (!eq) {
            ret = opts_fail(err, err_len, "'%s' is not key=value", item);
            break;
        }
        *eq = '\0';
        r = opts_apply(o, item, eq + 1, &mode_set);
        if (r == -ENOENT) {
            ret = opts_fail(err, err_len, "unknown sim option '%s'", item);
            break;
        }
        if (r) {
            ret = opts_fail(err, err_len, "bad value '%s' for sim option '%s'", eq + 1, item);
            break;
        }
    }
    free(copy);
    return ret;
}

int nvl_sim_opts_check(const struct nvl_sim_opts *o, char *err, size_t err_len)
{
    if (o->lba_size != 512 && o->lba_size != 4096)
        return opts_fail(err, err_len, "lba must be 512 or 4096, not %u", o->lba_size);
    if (o->mqes < 1)
        return opts_fail(err, err_len, "mqes must be at least 1 (2 entries)");
    if (o->max_io_queues < 1)
        return opts_fail(err, err_len, "queues must be at least 1");
    if (o->threads < 1 || o->threads > 64)
        return opts_fail(err, err_len, "threads must be 1..64, not %u", o->threads);
    if (o->mdts > 16)
        return opts_fail(err, err_len, "mdts above 16 (256 MiB) is not supported");
    if (o->backing == NVL_SIM_BACKING_FILE && !o->path[0])
        return opts_fail(err, err_len, "mode=file needs file=PATH");
    if (o->backing == NVL_SIM_BACKING_NULL && o->path[0])
        return opts_fail(err, err_len, "mode=null takes no file");
    if (o->ns_bytes && o->ns_bytes < o->lba_size)
        return opts_fail(err, err_len, "size is smaller than one block");
    return 0;
}
