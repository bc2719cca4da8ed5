/* bgemm_avx2.c — AVX2 micro-kernel and popcount peak. AVX2 has no vector popcount: each byte's count
 * is two 4-bit table lookups (vpshufb); byte counts accumulate for up to 31 steps (31 · 8 < 256) and are
 * then widened to 64-bit lanes with vpsadbw. */
#include "internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2")))

static inline __attribute__((always_inline)) AVX2 __m256i popcount_bytes(__m256i x, __m256i table, __m256i low) {
    __m256i lo = _mm256_and_si256(x, low);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low);
    return _mm256_add_epi8(_mm256_shuffle_epi8(table, lo), _mm256_shuffle_epi8(table, hi));
}

static inline __attribute__((always_inline)) AVX2 __m256i nibble_table(void) {
    return _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3,
                            2, 3, 3, 4);
}

/* One row of A against the 16 columns of a panel (four 4-word vectors). */
static AVX2 void row_tile(const ck_row_segments *seg, const uint64_t *a_row, const uint64_t *b_panel, int32_t *row,
                          int flags, int32_t k) {
    const __m256i table = nibble_table(), low = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
    __m256i wide[4] = {zero, zero, zero, zero};
    for (int64_t r = 0; r < seg->count; r++) {
    const uint64_t *a = a_row + r * seg->stride, *b = b_panel + r * seg->words * CK_NR;
    const int64_t kw = seg->words;
    for (int64_t t0 = 0; t0 < kw; t0 += 31) {
        int64_t end = t0 + 31 < kw ? t0 + 31 : kw;
        __m256i bytes[4] = {zero, zero, zero, zero};
        for (int64_t t = t0; t < end; t++) {
            const __m256i at = _mm256_set1_epi64x((long long)a[t]);
            for (int v = 0; v < 4; v++) {
                __m256i bv = _mm256_load_si256((const __m256i *)(b + t * CK_NR + 4 * v));
                bytes[v] = _mm256_add_epi8(bytes[v], popcount_bytes(_mm256_xor_si256(at, bv), table, low));
            }
        }
        for (int v = 0; v < 4; v++) wide[v] = _mm256_add_epi64(wide[v], _mm256_sad_epu8(bytes[v], zero));
    }
    }
    for (int v = 0; v < 4; v++) {
        uint64_t lanes[4];
        _mm256_storeu_si256((__m256i *)lanes, wide[v]);
        for (int j = 0; j < 4; j++) {
            int32_t x = (int32_t)lanes[j] + ((flags & CK_TILE_ACCUMULATE) ? row[4 * v + j] : 0);
            row[4 * v + j] = (flags & CK_TILE_FINAL) ? k - 2 * x : x;
        }
    }
}

AVX2 void ck_popcount_tile_avx2(int mr, const ck_row_segments *seg, const uint64_t *const *a, const uint64_t *b,
                               int32_t *out, int64_t ldo, int flags, int32_t k) {
    for (int i = 0; i < mr; i++) row_tile(seg, a[i], b, out + i * ldo, flags, k);
}

/* Twelve byte accumulators of XOR + nibble-lookup popcount + ADD on registers; the empty asm keeps the
 * compiler from hoisting the loop body. 31 steps per widening, as in the micro-kernel. */
AVX2 uint64_t ck_popcount_peak_avx2(uint64_t iterations) {
    const __m256i table = nibble_table(), low = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
    __m256i x[12], wide = zero;
    __m256i y = _mm256_set1_epi64x(0x0123456789abcdefLL);
    for (int i = 0; i < 12; i++) x[i] = _mm256_set1_epi64x((long long)(0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1)));
    for (uint64_t it = 0; it < iterations; it += 31) {
        __m256i s[12];
        for (int i = 0; i < 12; i++) s[i] = zero;
        for (int r = 0; r < 31; r++) {
            __asm__ volatile("" : "+x"(y));
            for (int i = 0; i < 12; i++) s[i] = _mm256_add_epi8(s[i], popcount_bytes(_mm256_xor_si256(x[i], y), table, low));
        }
        for (int i = 0; i < 12; i++) wide = _mm256_add_epi64(wide, _mm256_sad_epu8(s[i], zero));
    }
    uint64_t lanes[4];
    _mm256_storeu_si256((__m256i *)lanes, wide);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

#else
void ck_popcount_tile_avx2(int mr, const ck_row_segments *seg, const uint64_t *const *a, const uint64_t *b,
                           int32_t *out, int64_t ldo, int flags, int32_t k) {
    ck_popcount_tile_scalar(mr, seg, a, b, out, ldo, flags, k);
}
uint64_t ck_popcount_peak_avx2(uint64_t iterations) { return iterations; }
#endif
