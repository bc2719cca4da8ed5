/* train_elementwise.c — element-wise passes of training: add, axpby, ReLU, hardtanh, transposes, broadcasts.
 *
 * Work is split into fixed chunks of CHUNK elements so that each thread's inner loop is a plain counted
 * loop the compiler vectorises, and so that small tensors run on the calling thread (a fork/join costs a
 * few microseconds, more than a pass over a few thousand floats). */
#include "internal.h"

#include <string.h>

#define CHUNK ((int64_t)16384)
#define MAX_ELEMENTS ((int64_t)1 << 40)

static inline bool count_ok(int64_t n) { return n >= 1 && n <= MAX_ELEMENTS; }
static inline int64_t chunk_count(int64_t n) { return (n + CHUNK - 1) / CHUNK; }
static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

ck_status ck_add_f32(const float *a, const float *b, int64_t n, float *out) {
    if (a == NULL || b == NULL || out == NULL) return CK_ERR_NULL_POINTER;
    if (!count_ok(n)) return CK_ERR_INVALID_SIZE;
    const int64_t chunks = chunk_count(n);
    const int threads = ck_get_num_threads();
#pragma omp parallel for num_threads(threads) if (chunks > 1)
    for (int64_t ch = 0; ch < chunks; ch++) {
        const int64_t end = min64(n, (ch + 1) * CHUNK);
        for (int64_t i = ch * CHUNK; i < end; i++) out[i] = a[i] + b[i];
    }
    return CK_OK;
}

ck_status ck_axpby_f32(int64_t n, float alpha, const float *x, float beta, float *y) {
    if (x == NULL || y == NULL) return CK_ERR_NULL_POINTER;
    if (!count_ok(n)) return CK_ERR_INVALID_SIZE;
    const int64_t chunks = chunk_count(n);
    const int threads = ck_get_num_threads();
#pragma omp parallel for num_threads(threads) if (chunks > 1)
    for (int64_t ch = 0; ch < chunks; ch++) {
        const int64_t end = min64(n, (ch + 1) * CHUNK);
        if (beta == 0.0f) {
            for (int64_t i = ch * CHUNK; i < end; i++) y[i] = alpha * x[i];
        } else if (alpha == 1.0f && beta == 1.0f) {
            for (int64_t i = ch * CHUNK; i < end; i++) y[i] += x[i];
        } else {
            for (int64_t i = ch * CHUNK; i < end; i++) y[i] = alpha * x[i] + beta * y[i];
        }
    }
    return CK_OK;
}

ck_status ck_relu_forward_f32(const float *x, int64_t n, float *y) {
    if (x == NULL || y == NULL) return CK_ERR_NULL_POINTER;
    if (!count_ok(n)) return CK_ERR_INVALID_SIZE;
    const int64_t chunks = chunk_count(n);
    const int threads = ck_get_num_threads();
#pragma omp parallel for num_threads(threads) if (chunks > 1)
    for (int64_t ch = 0; ch < chunks; ch++) {
        const int64_t end = min64(n, (ch + 1) * CHUNK);
        /* "x < 0 ? 0 : x" keeps NaN (the comparison is false), as torch.relu does. */
        for (int64_t i = ch * CHUNK; i < end; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
    }
    return CK_OK;
}

ck_status ck_relu_backward_f32(const float *x, const float *grad, int64_t n, float slope_at_zero, int accumulate,
                               float *dx) {
    if (x == NULL || grad == NULL || dx == NULL) return CK_ERR_NULL_POINTER;
    if (!count_ok(n)) return CK_ERR_INVALID_SIZE;
    const int64_t chunks = chunk_count(n);
    const int threads = ck_get_num_threads();
#pragma omp parallel for num_threads(threads) if (chunks > 1)
    for (int64_t ch = 0; ch < chunks; ch++) {
        const int64_t end = min64(n, (ch + 1) * CHUNK);
        /* The gradient is loaded and the product at 0 computed unconditionally, as two flat selects, so the loop
         * vectorises (a nested conditional expression left it scalar, 12× slower). */
        if (accumulate) {
            for (int64_t i = ch * CHUNK; i < end; i++) {
                const float g = grad[i], at_zero = x[i] == 0.0f ? slope_at_zero * g : 0.0f;
                dx[i] += x[i] > 0.0f ? g : at_zero;
            }
        } else {
            for (int64_t i = ch * CHUNK; i < end; i++) {
                const float g = grad[i], at_zero = x[i] == 0.0f ? slope_at_zero * g : 0.0f;
                dx[i] = x[i] > 0.0f ? g : at_zero;
            }
        }
    }
    return CK_OK;
}

ck_status ck_hardtanh_forward_f32(const float *x, int64_t n, float min_value, float max_value, float *y) {
    if (x == NULL || y == NULL) return CK_ERR_NULL_POINTER;
    if (!count_ok(n) || !(min_value <= max_value)) return CK_ERR_INVALID_SIZE;
    const int64_t chunks = chunk_count(n);
    const int threads = ck_get_num_threads();
#pragma omp parallel for num_threads(threads) if (chunks > 1)
    for (int64_t ch = 0; ch < chunks; ch++) {
        const int64_t end = min64(n, (ch + 1) * CHUNK);
        for (int64_t i = ch * CHUNK; i < end; i++) {
            float v = x[i];
            v = v < min_value ? min_value : v; /* NaN fails both compares and passes through */
            y[i] = v > max_value ? max_value : v;
        }
    }
    return CK_OK;
}

ck_status ck_hardtanh_backward_f32(const float *x, const float *grad, int64_t n, float min_value, float max_value,
                                   int accumulate, float *dx) {
    if (x == NULL || grad == NULL || dx == NULL) return CK_ERR_NULL_POINTER;
    if (!count_ok(n) || !(min_value <= max_value)) return CK_ERR_INVALID_SIZE;
    const int64_t chunks = chunk_count(n);
    const int threads = ck_get_num_threads();
#pragma omp parallel for num_threads(threads) if (chunks > 1)
    for (int64_t ch = 0; ch < chunks; ch++) {
        const int64_t end = min64(n, (ch + 1) * CHUNK);
        if (accumulate) {
            for (int64_t i = ch * CHUNK; i < end; i++) {
                const float g = grad[i], v = x[i];
                dx[i] += ((v > min_value) & (v < max_value)) ? g : 0.0f;
            }
        } else {
            for (int64_t i = ch * CHUNK; i < end; i++) {
                const float g = grad[i], v = x[i];
                dx[i] = ((v > min_value) & (v < max_value)) ? g : 0.0f;
            }
        }
    }
    return CK_OK;
}

/* Tiles of TILE × TILE keep both the rows read and the rows written in L1 for any matrix size. */
#define TILE 32

ck_status ck_batched_transpose_f32(const float *x, int64_t batch, int64_t rows, int64_t cols, int accumulate,
                                   float *out) {
    if (x == NULL || out == NULL) return CK_ERR_NULL_POINTER;
    if (!ck_size_ok(batch) || !ck_size_ok(rows) || !ck_size_ok(cols)) return CK_ERR_INVALID_SIZE;
    if (batch > MAX_ELEMENTS / rows || batch * rows > MAX_ELEMENTS / cols) return CK_ERR_INVALID_SIZE;
    const int64_t row_tiles = (rows + TILE - 1) / TILE, col_tiles = (cols + TILE - 1) / TILE;
    const int64_t tasks = batch * row_tiles * col_tiles;
    const int threads = ck_get_num_threads();
#pragma omp parallel for num_threads(threads) if (batch * rows * cols > CHUNK)
    for (int64_t t = 0; t < tasks; t++) {
        const int64_t b = t / (row_tiles * col_tiles), rt = (t / col_tiles) % row_tiles, ct = t % col_tiles;
        const float *src = x + b * rows * cols;
        float *dst = out + b * rows * cols;
        const int64_t i_end = min64(rows, (rt + 1) * TILE), j_end = min64(cols, (ct + 1) * TILE);
        for (int64_t j = ct * TILE; j < j_end; j++) {
            for (int64_t i = rt * TILE; i < i_end; i++) {
                if (accumulate) {
                    dst[j * rows + i] += src[i * cols + j];
                } else {
                    dst[j * rows + i] = src[i * cols + j];
                }
            }
        }
    }
    return CK_OK;
}

ck_status ck_broadcast_rows_f32(const float *row, int64_t rows, int64_t cols, float *out) {
    if (row == NULL || out == NULL) return CK_ERR_NULL_POINTER;
    if (!ck_size_ok(rows) || !ck_size_ok(cols) || rows > MAX_ELEMENTS / cols) return CK_ERR_INVALID_SIZE;
    const int threads = ck_get_num_threads();
#pragma omp parallel for num_threads(threads) if (rows * cols > CHUNK)
    for (int64_t r = 0; r < rows; r++) memcpy(out + r * cols, row, (size_t)cols * sizeof(float));
    return CK_OK;
}
