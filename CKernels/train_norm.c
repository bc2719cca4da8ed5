/* train_norm.c — per-channel passes over `rows × channels` matrices (NHWC activations with rows = N·H·W, or
 * [N, F] features): batch-norm statistics, the affine transform, the backward reductions and input gradient.
 *
 * Reductions sum fixed blocks of BLOCK rows into per-block partial sums (double), then add the partials in
 * block order on one thread: the result is the same whatever the number of threads, and the inner loops run
 * along the contiguous channel dimension, where they vectorise. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define BLOCK ((int64_t)512)
#define MAX_ELEMENTS ((int64_t)1 << 40)
#define PARALLEL_MIN ((int64_t)16384)

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static bool matrix_ok(int64_t rows, int64_t channels) {
    return ck_size_ok(rows) && ck_size_ok(channels) && rows <= MAX_ELEMENTS / channels;
}

/* Adds the `blocks` partial rows of `partial` (blocks × channels) into `out` in block order. */
static void combine(const double *partial, int64_t blocks, int64_t channels, double *out) {
    for (int64_t c = 0; c < channels; c++) out[c] = 0.0;
    for (int64_t b = 0; b < blocks; b++) {
        const double *p = partial + b * channels;
        for (int64_t c = 0; c < channels; c++) out[c] += p[c];
    }
}

ck_status ck_channel_moment_f64(const float *x, int64_t rows, int64_t channels, const double *center, double *out) {
    if (x == NULL || out == NULL) return CK_ERR_NULL_POINTER;
    if (!matrix_ok(rows, channels)) return CK_ERR_INVALID_SIZE;
    const int64_t blocks = (rows + BLOCK - 1) / BLOCK;
    double *partial = malloc((size_t)(blocks > 0 ? blocks : 1) * (size_t)channels * sizeof(double));
    if (partial == NULL) return CK_ERR_OUT_OF_MEMORY;
    const int threads = ck_get_num_threads();
#pragma omp parallel for num_threads(threads) if (rows * channels > PARALLEL_MIN)
    for (int64_t b = 0; b < blocks; b++) {
        double *acc = partial + b * channels;
        for (int64_t c = 0; c < channels; c++) acc[c] = 0.0;
        const int64_t end = min64(rows, (b + 1) * BLOCK);
        for (int64_t r = b * BLOCK; r < end; r++) {
            const float *row = x + r * channels;
            if (center == NULL) {
                for (int64_t c = 0; c < channels; c++) acc[c] += (double)row[c];
            } else {
                for (int64_t c = 0; c < channels; c++) {
                    const double d = (double)row[c] - center[c];
                    acc[c] += d * d;
                }
            }
        }
    }
    combine(partial, blocks, channels, out);
    free(partial);
    return CK_OK;
}

ck_status ck_channel_mean_var_f32(const float *x, int64_t rows, int64_t channels, float *mean, float *var) {
    if (x == NULL || mean == NULL || var == NULL) return CK_ERR_NULL_POINTER;
    if (!matrix_ok(rows, channels)) return CK_ERR_INVALID_SIZE;
    double *center = malloc((size_t)channels * 2 * sizeof(double));
    if (center == NULL) return CK_ERR_OUT_OF_MEMORY;
    double *total = center + channels;
    /* Two passes (mean, then squared deviations from it) so that a large mean cannot cancel the variance. */
    ck_status status = ck_channel_moment_f64(x, rows, channels, NULL, total);
    if (status == CK_OK) {
        for (int64_t c = 0; c < channels; c++) center[c] = total[c] / (double)rows;
        status = ck_channel_moment_f64(x, rows, channels, center, total);
    }
    if (status == CK_OK) {
        for (int64_t c = 0; c < channels; c++) {
            mean[c] = (float)center[c];
            var[c] = (float)(total[c] / (double)rows);
        }
    }
    free(center);
    return status;
}

ck_status ck_channel_affine_f32(const float *x, int64_t rows, int64_t channels, const float *scale,
                                const float *shift, float *y) {
    if (x == NULL || y == NULL) return CK_ERR_NULL_POINTER;
    if (!matrix_ok(rows, channels)) return CK_ERR_INVALID_SIZE;
    const int threads = ck_get_num_threads();
    const int64_t blocks = (rows + BLOCK - 1) / BLOCK;
#pragma omp parallel for num_threads(threads) if (rows * channels > PARALLEL_MIN)
    for (int64_t b = 0; b < blocks; b++) {
        const int64_t end = min64(rows, (b + 1) * BLOCK);
        for (int64_t r = b * BLOCK; r < end; r++) {
            const float *src = x + r * channels;
            float *dst = y + r * channels;
            if (scale != NULL && shift != NULL) {
                for (int64_t c = 0; c < channels; c++) dst[c] = src[c] * scale[c] + shift[c];
            } else if (scale != NULL) {
                for (int64_t c = 0; c < channels; c++) dst[c] = src[c] * scale[c];
            } else if (shift != NULL) {
                for (int64_t c = 0; c < channels; c++) dst[c] = src[c] + shift[c];
            } else if (dst != src) {
                memcpy(dst, src, (size_t)channels * sizeof(float));
            }
        }
    }
    return CK_OK;
}

ck_status ck_channel_sums_f64(const float *g, const float *x, const float *center, int64_t rows, int64_t channels,
                              double *sum_g, double *sum_gx) {
    if (g == NULL || sum_g == NULL) return CK_ERR_NULL_POINTER;
    if ((x == NULL) != (sum_gx == NULL)) return CK_ERR_NULL_POINTER;
    if (!matrix_ok(rows, channels)) return CK_ERR_INVALID_SIZE;
    const bool with_x = x != NULL;
    const int64_t blocks = (rows + BLOCK - 1) / BLOCK;
    const int64_t width = with_x ? 2 * channels : channels; /* per block: Σg, then Σg·(x − center) */
    double *partial = malloc((size_t)(blocks + 1) * (size_t)width * sizeof(double));
    double *centers = malloc((size_t)channels * sizeof(double));
    if (partial == NULL || centers == NULL) {
        free(partial);
        free(centers);
        return CK_ERR_OUT_OF_MEMORY;
    }
    for (int64_t c = 0; c < channels; c++) centers[c] = center != NULL ? (double)center[c] : 0.0;
    const int threads = ck_get_num_threads();
#pragma omp parallel for num_threads(threads) if (rows * channels > PARALLEL_MIN)
    for (int64_t b = 0; b < blocks; b++) {
        double *acc_g = partial + b * width, *acc_gx = acc_g + channels;
        for (int64_t c = 0; c < width; c++) acc_g[c] = 0.0;
        const int64_t end = min64(rows, (b + 1) * BLOCK);
        for (int64_t r = b * BLOCK; r < end; r++) {
            const float *gr = g + r * channels;
            for (int64_t c = 0; c < channels; c++) acc_g[c] += (double)gr[c];
            if (with_x) {
                const float *xr = x + r * channels;
                for (int64_t c = 0; c < channels; c++) acc_gx[c] += (double)gr[c] * ((double)xr[c] - centers[c]);
            }
        }
    }
    double *total = partial + blocks * width;
    combine(partial, blocks, width, total);
    for (int64_t c = 0; c < channels; c++) sum_g[c] = total[c];
    if (with_x) {
        for (int64_t c = 0; c < channels; c++) sum_gx[c] = total[channels + c];
    }
    free(partial);
    free(centers);
    return CK_OK;
}

ck_status ck_channel_sums_f32(const float *g, const float *x, const float *center, int64_t rows, int64_t channels,
                              float *sum_g, float *sum_gx) {
    if (g == NULL || sum_g == NULL) return CK_ERR_NULL_POINTER;
    if ((x == NULL) != (sum_gx == NULL)) return CK_ERR_NULL_POINTER;
    if (!matrix_ok(rows, channels)) return CK_ERR_INVALID_SIZE;
    double *sums = malloc((size_t)channels * 2 * sizeof(double));
    if (sums == NULL) return CK_ERR_OUT_OF_MEMORY;
    ck_status status = ck_channel_sums_f64(g, x, center, rows, channels, sums, x != NULL ? sums + channels : NULL);
    if (status == CK_OK) {
        for (int64_t c = 0; c < channels; c++) sum_g[c] = (float)sums[c];
        if (x != NULL) {
            for (int64_t c = 0; c < channels; c++) sum_gx[c] = (float)sums[channels + c];
        }
    }
    free(sums);
    return status;
}

/* The input gradient of batch norm, a·g + b·(x − mean) + k (b == NULL: a·g + k), written or added to dx; with
 * `pre`, batch norm was applied to y = relu(pre) (`x` is y) and the value goes through the ReLU rule to pre's
 * gradient. */
static ck_status batchnorm_input_gradient(const float *g, const float *x, const float *center, const float *a,
                                          const float *b, const float *k, const float *pre, float slope_at_zero,
                                          int64_t rows, int64_t channels, int accumulate, float *dx) {
    if (g == NULL || a == NULL || dx == NULL) return CK_ERR_NULL_POINTER;
    if (b != NULL && (x == NULL || center == NULL)) return CK_ERR_NULL_POINTER;
    if (!matrix_ok(rows, channels)) return CK_ERR_INVALID_SIZE;
    const int threads = ck_get_num_threads();
    const int64_t blocks = (rows + BLOCK - 1) / BLOCK;
#pragma omp parallel for num_threads(threads) if (rows * channels > PARALLEL_MIN)
    for (int64_t blk = 0; blk < blocks; blk++) {
        const int64_t end = min64(rows, (blk + 1) * BLOCK);
        for (int64_t r = blk * BLOCK; r < end; r++) {
            const float *gr = g + r * channels;
            const float *xr = b != NULL ? x + r * channels : NULL;
            float *out = dx + r * channels;
            if (pre != NULL) {
                /* Batch norm's value as below, then the ReLU rule as ck_relu_backward_f32 applies it (two flat
                 * selects, so the loop vectorises). */
                const float *pr = pre + r * channels;
                for (int64_t c = 0; c < channels; c++) {
                    const float d = b != NULL ? a[c] * gr[c] + b[c] * (xr[c] - center[c]) + (k != NULL ? k[c] : 0.0f)
                                              : a[c] * gr[c] + (k != NULL ? k[c] : 0.0f);
                    const float at_zero = pr[c] == 0.0f ? slope_at_zero * d : 0.0f;
                    const float v = pr[c] > 0.0f ? d : at_zero;
                    out[c] = accumulate ? out[c] + v : v;
                }
            } else if (b != NULL) {
                if (accumulate) {
                    for (int64_t c = 0; c < channels; c++)
                        out[c] += a[c] * gr[c] + b[c] * (xr[c] - center[c]) + (k != NULL ? k[c] : 0.0f);
                } else {
                    for (int64_t c = 0; c < channels; c++)
                        out[c] = a[c] * gr[c] + b[c] * (xr[c] - center[c]) + (k != NULL ? k[c] : 0.0f);
                }
            } else {
                if (accumulate) {
                    for (int64_t c = 0; c < channels; c++) out[c] += a[c] * gr[c] + (k != NULL ? k[c] : 0.0f);
                } else {
                    for (int64_t c = 0; c < channels; c++) out[c] = a[c] * gr[c] + (k != NULL ? k[c] : 0.0f);
                }
            }
        }
    }
    return CK_OK;
}

ck_status ck_batchnorm_backward_input_f32(const float *g, const float *x, const float *center, const float *a,
                                          const float *b, const float *k, int64_t rows, int64_t channels,
                                          int accumulate, float *dx) {
    return batchnorm_input_gradient(g, x, center, a, b, k, NULL, 0.0f, rows, channels, accumulate, dx);
}

ck_status ck_batchnorm_relu_backward_input_f32(const float *g, const float *y, const float *center, const float *a,
                                               const float *b, const float *k, const float *pre, float slope_at_zero,
                                               int64_t rows, int64_t channels, int accumulate, float *dx) {
    if (pre == NULL) return CK_ERR_NULL_POINTER;
    return batchnorm_input_gradient(g, y, center, a, b, k, pre, slope_at_zero, rows, channels, accumulate, dx);
}
