/* peak.c — the machine's in-register XNOR + popcount throughput, the yardstick for bgemm. */
#include "internal.h"

#include <time.h>

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Runs `iterations` peak steps on each of `threads` threads; returns the wall time. */
static double timed_run(const ck_kernels *kern, int threads, uint64_t iterations, volatile uint64_t *sink) {
    double start = now_seconds();
#pragma omp parallel num_threads(threads)
    {
        uint64_t checksum = kern->popcount_peak(iterations);
#pragma omp atomic
        *sink += checksum;
    }
    return now_seconds() - start;
}

ck_status ck_popcount_peak(int threads, double seconds, double *out) {
    if (out == NULL) return CK_ERR_NULL_POINTER;
    if (threads < 1 || threads > 4096 || !(seconds > 0.0) || seconds > 3600.0) return CK_ERR_INVALID_SIZE;
    const ck_kernels *kern = ck_active_kernels();
    volatile uint64_t sink = 0;
    /* Calibrate on one thread until a run lasts long enough to time, then size the real run. */
    uint64_t iterations = 1 << 16;
    double elapsed = timed_run(kern, 1, iterations, &sink);
    while (elapsed < 0.02) {
        iterations *= 4;
        elapsed = timed_run(kern, 1, iterations, &sink);
    }
    iterations = (uint64_t)((double)iterations * seconds / elapsed) + 1;
    /* With more threads than processors the threads take turns, so a run of `iterations` each would last
     * threads / processors times `seconds` (minutes for --threads 1000 on two cores, before anything is printed).
     * Each thread's share shrinks by that factor instead: the run lasts about `seconds` whatever the thread count,
     * and the rate below, total work over wall time, is unchanged in meaning. */
    int processors = omp_get_num_procs();
    if (processors >= 1 && threads > processors) {
        iterations = iterations * (uint64_t)processors / (uint64_t)threads + 1;
    }
    /* Best of three: the machine is shared, the peak is what the core can do when it is not disturbed. */
    double best = 0.0;
    for (int r = 0; r < 3; r++) {
        double t = timed_run(kern, threads, iterations, &sink);
        double rate = (double)iterations * (double)kern->peak_bits_per_step * threads / t;
        if (rate > best) best = rate;
    }
    *out = best;
    return CK_OK;
}
