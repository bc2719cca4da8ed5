/* pack.c — sign + bit-packing of float tensors, and unpacking. Bit 1 = negative (−1), sign(0) = +1. */
#include "internal.h"

/* Packs the signs of `cols` floats starting at x[0], x[stride], ... into ck_words(cols) words. */
static void pack_row(const float *x, int64_t stride, int64_t cols, uint64_t *out) {
    int64_t words = ck_words(cols);
    for (int64_t w = 0; w < words; w++) {
        int64_t base = w * 64;
        int64_t count = cols - base < 64 ? cols - base : 64;
        uint64_t bits = 0;
        for (int64_t j = 0; j < count; j++) bits |= (uint64_t)(x[(base + j) * stride] < 0.0f) << j;
        out[w] = bits;
    }
}

ck_status ck_pack_signs(const float *x, int64_t rows, int64_t cols, uint64_t *out) {
    if (x == NULL || out == NULL) return CK_ERR_NULL_POINTER;
    if (!ck_size_ok(rows) || !ck_size_ok(cols)) return CK_ERR_INVALID_SIZE;
    int64_t words = ck_words(cols);
    int threads = ck_get_num_threads();
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * cols > 65536)
    for (int64_t r = 0; r < rows; r++) pack_row(x + r * cols, 1, cols, out + r * words);
    return CK_OK;
}

ck_status ck_pack_signs_nchw(const float *x, int64_t n, int64_t c, int64_t h, int64_t w, uint64_t *out) {
    if (x == NULL || out == NULL) return CK_ERR_NULL_POINTER;
    if (!ck_size_ok(n) || !ck_size_ok(c) || !ck_size_ok(h) || !ck_size_ok(w)) return CK_ERR_INVALID_SIZE;
    int64_t words = ck_words(c), plane = h * w;
    int threads = ck_get_num_threads();
#pragma omp parallel for num_threads(threads) schedule(static) if (n * c * plane > 65536)
    for (int64_t p = 0; p < n * plane; p++) {
        int64_t image = p / plane, pixel = p % plane;
        pack_row(x + image * c * plane + pixel, plane, c, out + p * words);
    }
    return CK_OK;
}

ck_status ck_unpack_signs(const uint64_t *bits, int64_t rows, int64_t cols, float *out) {
    if (bits == NULL || out == NULL) return CK_ERR_NULL_POINTER;
    if (!ck_size_ok(rows) || !ck_size_ok(cols)) return CK_ERR_INVALID_SIZE;
    int64_t words = ck_words(cols);
    int threads = ck_get_num_threads();
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * cols > 65536)
    for (int64_t r = 0; r < rows; r++) {
        const uint64_t *row = bits + r * words;
        for (int64_t j = 0; j < cols; j++) out[r * cols + j] = ((row[j >> 6] >> (j & 63)) & 1) ? -1.0f : 1.0f;
    }
    return CK_OK;
}
