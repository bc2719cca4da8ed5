/* bgemm_scalar.c — portable micro-kernel and popcount peak (plain C, any CPU). */
#include "internal.h"

void ck_popcount_tile_scalar(int mr, const ck_row_segments *seg, const uint64_t *const *a, const uint64_t *b,
                             int32_t *out, int64_t ldo, int flags, int32_t k) {
    for (int i = 0; i < mr; i++) {
        int64_t sums[CK_NR] = {0};
        for (int64_t r = 0; r < seg->count; r++) {
            const uint64_t *ar = a[i] + r * seg->stride, *br = b + r * seg->words * CK_NR;
            for (int64_t t = 0; t < seg->words; t++) {
                const uint64_t at = ar[t];
                for (int j = 0; j < CK_NR; j++) sums[j] += __builtin_popcountll(at ^ br[t * CK_NR + j]);
            }
        }
        int32_t *row = out + i * ldo;
        for (int j = 0; j < CK_NR; j++) {
            int32_t x = (int32_t)sums[j] + ((flags & CK_TILE_ACCUMULATE) ? row[j] : 0);
            row[j] = (flags & CK_TILE_FINAL) ? k - 2 * x : x;
        }
    }
}

/* Twelve 64-bit accumulators of XOR + POPCOUNT + ADD; the empty asm keeps the body in the loop. */
uint64_t ck_popcount_peak_scalar(uint64_t iterations) {
    uint64_t x[12], s[12] = {0};
    uint64_t y = 0x0123456789abcdefULL;
    for (int i = 0; i < 12; i++) x[i] = 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1);
    for (uint64_t it = 0; it < iterations; it++) {
        __asm__ volatile("" : "+r"(y));
        for (int i = 0; i < 12; i++) s[i] += (uint64_t)__builtin_popcountll(x[i] ^ y);
    }
    uint64_t total = 0;
    for (int i = 0; i < 12; i++) total += s[i];
    return total;
}
