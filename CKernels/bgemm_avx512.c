/* bgemm_avx512.c — AVX-512 + VPOPCNTDQ micro-kernel and popcount peak.
 * A tile is mr rows × CK_NR (16) columns: two 8-word vectors of B per step, one broadcast word of A per
 * row, 2·mr independent 64-bit accumulators; no horizontal sums. */
#include "internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512vpopcntdq")))

static inline __attribute__((always_inline)) AVX512 void
tile(const int mr, const ck_row_segments *seg, const uint64_t *const *a, const uint64_t *b, int32_t *out,
     int64_t ldo, int flags, int32_t k) {
    __m512i s0[CK_MR_MAX], s1[CK_MR_MAX];
    for (int i = 0; i < mr; i++) s0[i] = s1[i] = _mm512_setzero_si512();
    const int64_t words = seg->words;
    for (int64_t r = 0; r < seg->count; r++) {
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
    const __m512i kv = _mm512_set1_epi32(k);
    for (int i = 0; i < mr; i++) {
        __m512i x = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(s0[i])),
                                       _mm512_cvtepi64_epi32(s1[i]), 1);
        int32_t *row = out + i * ldo;
        if (flags & CK_TILE_ACCUMULATE) x = _mm512_add_epi32(x, _mm512_loadu_si512((const void *)row));
        if (flags & CK_TILE_FINAL) x = _mm512_sub_epi32(kv, _mm512_slli_epi32(x, 1));
        _mm512_storeu_si512((void *)row, x);
    }
}

AVX512 void ck_popcount_tile_avx512(int mr, const ck_row_segments *seg, const uint64_t *const *a, const uint64_t *b,
                                    int32_t *out, int64_t ldo, int flags, int32_t k) {
    switch (mr) {
    case 8: tile(8, seg, a, b, out, ldo, flags, k); break;
    case 6: tile(6, seg, a, b, out, ldo, flags, k); break;
    case 4: tile(4, seg, a, b, out, ldo, flags, k); break;
    default:
        for (int i = 0; i < mr; i++) tile(1, seg, a + i, b, out + i * ldo, ldo, flags, k);
        break;
    }
}

/* Twelve accumulators of XOR + POPCNT + ADD on registers only. The empty asm statements tell the
 * compiler the operands changed, so nothing is hoisted out of the loop, yet they emit no instruction. */
AVX512 uint64_t ck_popcount_peak_avx512(uint64_t iterations) {
    __m512i x[12], s[12];
    __m512i y = _mm512_set1_epi64(0x0123456789abcdefLL);
    for (int i = 0; i < 12; i++) {
        x[i] = _mm512_set1_epi64((long long)(0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1)));
        s[i] = _mm512_setzero_si512();
    }
    for (uint64_t it = 0; it < iterations; it++) {
        __asm__ volatile("" : "+v"(y));
        for (int i = 0; i < 12; i++) s[i] = _mm512_add_epi64(s[i], _mm512_popcnt_epi64(_mm512_xor_si512(x[i], y)));
    }
    __m512i total = s[0];
    for (int i = 1; i < 12; i++) total = _mm512_add_epi64(total, s[i]);
    return (uint64_t)_mm512_reduce_add_epi64(total);
}

#else
void ck_popcount_tile_avx512(int mr, const ck_row_segments *seg, const uint64_t *const *a, const uint64_t *b,
                             int32_t *out, int64_t ldo, int flags, int32_t k) {
    ck_popcount_tile_scalar(mr, seg, a, b, out, ldo, flags, k);
}
uint64_t ck_popcount_peak_avx512(uint64_t iterations) { return iterations; }
#endif
