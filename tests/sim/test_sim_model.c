/* Tests for driver/sim/src/sim_model.c: due times of the bandwidth + latency model, computed by
 * hand (no clock involved: times are passed in). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>

#include "sim_internal.h"

#define T0 1000000000ull

static void disabled_by_default(void **state)
{
    struct sim_model m;

    (void)state;
    nvl__sim_model_init(&m, 0, 0, T0);
    assert_false(m.enabled);
    assert_int_equal(nvl__sim_model_due(&m, T0 + 5, 1 << 20), T0 + 5);
}

static void latency_only(void **state)
{
    struct sim_model m;

    (void)state;
    nvl__sim_model_init(&m, 0, 80000, T0);
    assert_true(m.enabled);
    /* No bandwidth limit: every command just waits its latency, however many at once. */
    assert_int_equal(nvl__sim_model_due(&m, T0 + 100, 1 << 20), T0 + 80100);
    assert_int_equal(nvl__sim_model_due(&m, T0 + 100, 1 << 20), T0 + 80100);
}

/* 1 GB/s: 1 MB takes 1 ms. Back-to-back commands queue behind each other. */
static void bandwidth_queues_commands(void **state)
{
    struct sim_model m;

    (void)state;
    nvl__sim_model_init(&m, 1000000000ull, 0, T0);
    assert_int_equal(nvl__sim_model_due(&m, T0, 1000000), T0 + 1000000);
    assert_int_equal(nvl__sim_model_due(&m, T0, 1000000), T0 + 2000000);
    assert_int_equal(nvl__sim_model_due(&m, T0 + 500000, 500000), T0 + 2500000);
    /* After an idle gap the bucket starts at the arrival: idle time is not banked. */
    assert_int_equal(nvl__sim_model_due(&m, T0 + 10000000, 1000), T0 + 10001000);
}

/* Completion is the later of arrival + latency and the end of the transfer. */
static void latency_and_bandwidth(void **state)
{
    struct sim_model m;

    (void)state;
    nvl__sim_model_init(&m, 1000000000ull, 80000, T0);
    /* 4 KiB at 1 GB/s is 4.1 us, below the 80 us latency. */
    assert_int_equal(nvl__sim_model_due(&m, T0, 4096), T0 + 80000);
    /* 1 MB: the transfer (ends at 1.0041 ms) dominates. */
    assert_int_equal(nvl__sim_model_due(&m, T0, 1000000), T0 + 1004096);
}

/* Costs that are not whole nanoseconds add up without drift: 100000 x 512 B at 3.35 GB/s is
 * 51.2 MB / 3.35e9 B/s = 15283582.1 ns; rounding each 152.8 ns turn to a nanosecond would be
 * off by 20 us. */
static void no_rounding_drift(void **state)
{
    struct sim_model m;
    uint64_t due = 0;
    int i;

    (void)state;
    nvl__sim_model_init(&m, 3350000000ull, 0, T0);
    for (i = 0; i < 100000; i++)
        due = nvl__sim_model_due(&m, T0, 512);
    assert_in_range(due - T0, 15283582 - 100, 15283582 + 100);
}

struct racer {
    struct sim_model *m;
    uint64_t last;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    int i;

    for (i = 0; i < 100000; i++)
        r->last = nvl__sim_model_due(r->m, T0, 1000);
    return NULL;
}

/* Several threads share one bucket: the total time is the sum of all turns. */
static void shared_between_threads(void **state)
{
    struct sim_model m;
    struct racer r[4];
    pthread_t t[4];
    uint64_t max = 0;
    int i;

    (void)state;
    nvl__sim_model_init(&m, 1000000000ull, 0, T0);
    for (i = 0; i < 4; i++) {
        r[i].m = &m;
        pthread_create(&t[i], NULL, race, &r[i]);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        if (r[i].last > max)
            max = r[i].last;
    }
    /* 400000 x 1000 B at 1 GB/s = 0.4 s. */
    assert_int_equal(max - T0, 400000000ull);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(disabled_by_default),       cmocka_unit_test(latency_only),
        cmocka_unit_test(bandwidth_queues_commands), cmocka_unit_test(latency_and_bandwidth),
        cmocka_unit_test(no_rounding_drift),         cmocka_unit_test(shared_between_threads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
