/* The logger shared by all nvload libraries: leveled, prefixed, to stderr. */
#include "nvl_driver/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int log_level = -1;

static enum nvl_log_level level_from_env(void)
{
    const char *v = getenv("NVL_LOG");

    if (!v)
        return NVL_LOG_WARN;
    if (!strcasecmp(v, "error"))
        return NVL_LOG_ERROR;
    if (!strcasecmp(v, "info"))
        return NVL_LOG_INFO;
    if (!strcasecmp(v, "debug"))
        return NVL_LOG_DEBUG;
    return NVL_LOG_WARN;
}

void nvl_log_set_level(enum nvl_log_level level)
{
    log_level = (int)level;
}

enum nvl_log_level nvl_log_get_level(void)
{
    if (log_level < 0)
        log_level = (int)level_from_env();
    return (enum nvl_log_level)log_level;
}

void nvl_log_msg(enum nvl_log_level level, const char *who, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    char line[1024];
    va_list ap;

    if (level > nvl_log_get_level())
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    /* One fprintf per message so that lines from several threads do not interleave. */
    fprintf(stderr, "nvload %s: %s: %s\n", names[level], who ? who : "nvload", line);
}

const char *nvl_strerror(int err)
{
    if (err < 0)
        err = -err;
    return strerror(err);
}
