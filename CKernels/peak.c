/* peak.c — the machine's in-register throughputs, the yardsticks of the kernels: XNOR + popcount for bgemm,
 * float multiply-adds for the float convolutions of training. */
#include "internal.h"

#include <math.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* `iterations` steps of a peak loop on registers; returns a checksum so the work cannot be removed. */
typedef uint64_t (*peak_loop)(uint64_t iterations);

/* Runs `iterations` steps on each of `threads` threads; returns the wall time. */
static double timed_run(peak_loop loop, int threads, uint64_t iterations, volatile uint64_t *sink) {
    double start = now_seconds();
#pragma omp parallel num_threads(threads)
    {
        uint64_t checksum = loop(iterations);
#pragma omp atomic
        *sink += checksum;
    }
    return now_seconds() - start;
}

/* Operations per second of `loop`, `per_step` operations per step and thread. */
static ck_status measure_peak(peak_loop loop, double per_step, int threads, double seconds, double *out) {
    if (out == NULL) return CK_ERR_NULL_POINTER;
    if (threads < 1 || threads > 4096 || !(seconds > 0.0) || seconds > 3600.0) return CK_ERR_INVALID_SIZE;
    volatile uint64_t sink = 0;
    /* Calibrate on one thread until a run lasts long enough to time, then size the real run. */
    uint64_t iterations = 1 << 16;
    double elapsed = timed_run(loop, 1, iterations, &sink);
    while (elapsed < 0.02) {
        iterations *= 4;
        elapsed = timed_run(loop, 1, iterations, &sink);
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
        double t = timed_run(loop, threads, iterations, &sink);
        double rate = (double)iterations * per_step * threads / t;
        if (rate > best) best = rate;
    }
    *out = best;
    return CK_OK;
}

ck_status ck_popcount_peak(int threads, double seconds, double *out) {
    const ck_kernels *kern = ck_active_kernels();
    return measure_peak(kern->popcount_peak, (double)kern->peak_bits_per_step, threads, seconds, out);
}

/* Twelve independent chains acc = acc·m + a, enough to cover the latency of both FMA units; the values settle
 * at a/(1 − m) = 1, so nothing overflows or becomes denormal. The scalar loop uses fmaf, as the portable
 * convolution loops do. */
#define FMA_CHAINS 12

static uint64_t checksum_of(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

static uint64_t fma_peak_scalar(uint64_t iterations) {
    float acc[FMA_CHAINS];
    for (int i = 0; i < FMA_CHAINS; i++) acc[i] = (float)i;
    for (uint64_t it = 0; it < iterations; it++)
        for (int i = 0; i < FMA_CHAINS; i++) acc[i] = fmaf(acc[i], 0.5f, 0.5f);
    float total = 0.0f;
    for (int i = 0; i < FMA_CHAINS; i++) total += acc[i];
    return checksum_of(total);
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static uint64_t fma_peak_avx2(uint64_t iterations) {
    __m256 acc[FMA_CHAINS];
    __m256 m = _mm256_set1_ps(0.5f);
    const __m256 a = _mm256_set1_ps(0.5f);
    for (int i = 0; i < FMA_CHAINS; i++) acc[i] = _mm256_set1_ps((float)i);
    for (uint64_t it = 0; it < iterations; it++) {
        __asm__ volatile("" : "+x"(m));
        for (int i = 0; i < FMA_CHAINS; i++) acc[i] = _mm256_fmadd_ps(acc[i], m, a);
    }
    __m256 total = acc[0];
    for (int i = 1; i < FMA_CHAINS; i++) total = _mm256_add_ps(total, acc[i]);
    float lanes[8];
    _mm256_storeu_ps(lanes, total);
    return checksum_of(lanes[0]);
}

__attribute__((target("avx512f"))) static uint64_t fma_peak_avx512(uint64_t iterations) {
    __m512 acc[FMA_CHAINS];
    __m512 m = _mm512_set1_ps(0.5f);
    const __m512 a = _mm512_set1_ps(0.5f);
    for (int i = 0; i < FMA_CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
    for (uint64_t it = 0; it < iterations; it++) {
        __asm__ volatile("" : "+v"(m));
        for (int i = 0; i < FMA_CHAINS; i++) acc[i] = _mm512_fmadd_ps(acc[i], m, a);
    }
    __m512 total = acc[0];
    for (int i = 1; i < FMA_CHAINS; i++) total = _mm512_add_ps(total, acc[i]);
    return checksum_of(_mm512_reduce_add_ps(total));
}
#endif

ck_status ck_fma_peak(int threads, double seconds, double *out) {
    switch (ck_isa_active()) {
#if defined(__x86_64__)
    case CK_ISA_AVX512: return measure_peak(fma_peak_avx512, FMA_CHAINS * 16, threads, seconds, out);
    case CK_ISA_AVX2: return measure_peak(fma_peak_avx2, FMA_CHAINS * 8, threads, seconds, out);
#endif
    default: return measure_peak(fma_peak_scalar, FMA_CHAINS, threads, seconds, out);
    }
}
