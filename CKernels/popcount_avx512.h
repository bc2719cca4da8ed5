/* popcount_avx512.h — the AVX-512 popcount tile as an inline function that leaves its results in registers,
 * shared by the bgemm micro-kernel (which stores them) and the fused convolution (which transforms them in
 * place). Internal; include after internal.h, on x86-64 only. */
#ifndef CKERNELS_POPCOUNT_AVX512_H
#define CKERNELS_POPCOUNT_AVX512_H

#include <immintrin.h>

/* Popcounts of `mr` rows of A (read as the runs `seg` describes, starting at a[i]) XOR the CK_NR columns of the
 * panel `b`: x[i] holds the 16 counts of row i as 32-bit integers. Two 8-word vectors of B per step, one
 * broadcast word of A per row, 2·mr independent 64-bit accumulators; no horizontal sums. */
static inline __attribute__((always_inline, target("avx512f,avx512vpopcntdq"))) void
ck_popcount_rows_avx512(const int mr, const ck_row_segments *seg, const uint64_t *const *a, const uint64_t *b,
                        __m512i *x) {
    __m512i s0[CK_MR_MAX], s1[CK_MR_MAX];
    for (int i = 0; i < mr; i++) s0[i] = s1[i] = _mm512_setzero_si512();
    const int64_t words = seg->words;
    if (words == 1) {
        /* Runs of one word (row words of a convolution): one running offset instead of mr row pointers per run. */
        for (int64_t r = 0, at = 0; r < seg->count; r++, at += seg->stride) {
            const __m512i b0 = _mm512_load_si512((const void *)(b + r * CK_NR));
            const __m512i b1 = _mm512_load_si512((const void *)(b + r * CK_NR + 8));
            for (int i = 0; i < mr; i++) {
                const __m512i ai = _mm512_set1_epi64((long long)a[i][at]);
                s0[i] = _mm512_add_epi64(s0[i], _mm512_popcnt_epi64(_mm512_xor_si512(ai, b0)));
                s1[i] = _mm512_add_epi64(s1[i], _mm512_popcnt_epi64(_mm512_xor_si512(ai, b1)));
            }
        }
    }
    for (int64_t r = 0; words > 1 && r < seg->count; r++) {
        const uint64_t *ar[CK_MR_MAX];
        for (int i = 0; i < mr; i++) ar[i] = a[i] + r * seg->stride;
        const uint64_t *br = b + r * words * CK_NR;
        for (int64_t t = 0; t < words; t++) {
            const __m512i b0 = _mm512_load_si512((const void *)(br + t * CK_NR));
            const __m512i b1 = _mm512_load_si512((const void *)(br + t * CK_NR + 8));
            for (int i = 0; i < mr; i++) {
                const __m512i ai = _mm512_set1_epi64((long long)ar[i][t]);
                s0[i] = _mm512_add_epi64(s0[i], _mm512_popcnt_epi64(_mm512_xor_si512(ai, b0)));
                s1[i] = _mm512_add_epi64(s1[i], _mm512_popcnt_epi64(_mm512_xor_si512(ai, b1)));
            }
        }
    }
    /* The counts fit in 32 bits: the low halves of s0's then s1's lanes, in one two-source permute. */
    const __m512i low_halves = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    for (int i = 0; i < mr; i++) x[i] = _mm512_permutex2var_epi32(s0[i], low_halves, s1[i]);
}

#endif
