/* bgemm_avx512.c — AVX-512 + VPOPCNTDQ micro-kernel and popcount peak.
 * A tile is mr rows × CK_NR (16) columns, its popcounts from ck_popcount_rows_avx512 (popcount_avx512.h). */
#include "internal.h"

#if defined(__x86_64__)
#include "popcount_avx512.h"

#define AVX512 __attribute__((target("avx512f,avx512vpopcntdq")))

static inline __attribute__((always_inline)) AVX512 void
tile(const int mr, const ck_row_segments *seg, const uint64_t *const *a, const uint64_t *b, int32_t *out,
     int64_t ldo, int flags, int32_t k) {
    __m512i counts[CK_MR_MAX];
    ck_popcount_rows_avx512(mr, seg, a, b, counts);
    const __m512i kv = _mm512_set1_epi32(k);
    for (int i = 0; i < mr; i++) {
        __m512i x = counts[i];
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
