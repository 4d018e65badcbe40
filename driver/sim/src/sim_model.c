/* The drive model: a shared token bucket for bandwidth plus a fixed latency. A command that
 * arrives at time a with b bytes completes at max(a + latency, end of its turn in the bucket),
 * where turns are handed out back to back at the configured rate and the bucket never banks
 * idle time (its next turn starts no earlier than now). With enough commands in flight the
 * achieved rate is the configured one; with too few, latency bounds it, as on a real drive. */
#include "sim_internal.h"

#include <string.h>
#include <time.h>

uint64_t nvl__sim_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void nvl__sim_model_init(struct sim_model *m, uint64_t bw_bytes_per_s, uint64_t lat_ns,
                         uint64_t t0_ns)
{
    memset(m, 0, sizeof(*m));
    m->ps_per_byte = bw_bytes_per_s ? 1e12 / (double)bw_bytes_per_s : 0.0;
    m->lat_ns = lat_ns;
    m->t0_ns = t0_ns;
    m->enabled = bw_bytes_per_s || lat_ns;
}

uint64_t nvl__sim_model_due(struct sim_model *m, uint64_t now_ns, uint64_t bytes)
{
    uint64_t due = now_ns + m->lat_ns;

    if (m->ps_per_byte > 0.0) {
        /* Picoseconds since t0 keep the per-command rounding far below a nanosecond. */
        uint64_t now_ps = (now_ns - m->t0_ns) * 1000ull;
        uint64_t cost = (uint64_t)((double)bytes * m->ps_per_byte + 0.5);
        uint64_t old = __atomic_load_n(&m->bucket_ps, __ATOMIC_RELAXED);
        uint64_t end;

        do {
            end = (old > now_ps ? old : now_ps) + cost;
        } while (!__atomic_compare_exchange_n(&m->bucket_ps, &old, end, 1, __ATOMIC_RELAXED,
                                              __ATOMIC_RELAXED));
        end = m->t0_ns + (end + 999) / 1000;
        if (end > due)
            due = end;
    }
    return due;
}
