/* One logger for every nvload library. Libraries never print to stdout; they log here (stderr),
 * prefixed with the object the message is about (a controller's BDF, "sim", "loader", ...). */
#ifndef NVL_DRIVER_LOG_H
#define NVL_DRIVER_LOG_H

#ifdef __cplusplus
extern "C" {
#endif

enum nvl_log_level {
    NVL_LOG_ERROR = 0,
    NVL_LOG_WARN = 1,
    NVL_LOG_INFO = 2,
    NVL_LOG_DEBUG = 3,
};

/* Messages above this level are dropped. The default is NVL_LOG_WARN, or the value of the
 * environment variable NVL_LOG (error|warn|info|debug) when it is set. */
void nvl_log_set_level(enum nvl_log_level level);
enum nvl_log_level nvl_log_get_level(void);

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
void nvl_log_msg(enum nvl_log_level level, const char *who, const char *fmt, ...);

#define nvl_log_error(who, ...) nvl_log_msg(NVL_LOG_ERROR, (who), __VA_ARGS__)
#define nvl_log_warn(who, ...)  nvl_log_msg(NVL_LOG_WARN, (who), __VA_ARGS__)
#define nvl_log_info(who, ...)  nvl_log_msg(NVL_LOG_INFO, (who), __VA_ARGS__)
#define nvl_log_debug(who, ...) nvl_log_msg(NVL_LOG_DEBUG, (who), __VA_ARGS__)

/* nvload functions return 0 or -errno. This names the error for a human. */
const char *nvl_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif
