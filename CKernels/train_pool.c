/* train_pool.c — pooling (max, average, global average) and the ResNet option-A shortcut over NHWC floats,
 * forward and backward. Backward passes gather per input pixel rather than scatter per output window, so
 * overlapping windows never make two threads write the same element. */
#include "internal.h"

#include <math.h>
#include <string.h>

#define PARALLEL_MIN ((int64_t)16384)
#define MAX_ELEMENTS ((int64_t)1 << 40)

static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Outputs o (0 ≤ o < outputs) whose window [o·stride − pad, o·stride − pad + kernel) covers input i: [*lo, *hi]
 * (empty when *lo > *hi). */
static inline void covering_outputs(int64_t i, int64_t pad, int64_t kernel, int64_t stride, int64_t outputs,
                                    int64_t *lo, int64_t *hi) {
    const int64_t t = i + pad, first = t - kernel + 1;
    *lo = first <= 0 ? 0 : (first + stride - 1) / stride;
    *hi = t / stride < outputs - 1 ? t / stride : outputs - 1;
}

/* PyTorch rejects padding above half the kernel; it also guarantees every window overlaps the input. */
static ck_status pool_geometry(const ck_conv_shape *s, int64_t *oh, int64_t *ow) {
    ck_status status = ck_conv_output_size(s, oh, ow);
    if (status != CK_OK) return status;
    if (2 * s->pad_h > s->kernel_h || 2 * s->pad_w > s->kernel_w) return CK_ERR_INVALID_SIZE;
    if (s->height * s->width > INT32_MAX) return CK_ERR_INVALID_SIZE; /* argmax is an int32 position */
    return CK_OK;
}

ck_status ck_maxpool2d_forward_f32(const float *x, const ck_conv_shape *s, float *y, int32_t *argmax) {
    if (x == NULL || s == NULL || y == NULL) return CK_ERR_NULL_POINTER;
    int64_t oh, ow;
    ck_status status = pool_geometry(s, &oh, &ow);
    if (status != CK_OK) return status;
    const int64_t c = s->channels, h = s->height, w = s->width, outputs = s->batch * oh * ow;
    const int threads = ck_get_num_threads();
#pragma omp parallel for num_threads(threads) if (outputs * c > PARALLEL_MIN)
    for (int64_t o = 0; o < outputs; o++) {
        const int64_t n = o / (oh * ow), oy = (o / ow) % oh, ox = o % ow;
        const int64_t y0 = oy * s->stride_h - s->pad_h, x0 = ox * s->stride_w - s->pad_w;
        float *dst = y + o * c;
        int32_t *index = argmax != NULL ? argmax + o * c : NULL;
        /* As PyTorch: start from −∞ at the window's first real pixel, so a window of −∞ still has an argmax. */
        const int32_t first = (int32_t)(max64(y0, 0) * w + max64(x0, 0));
        for (int64_t k = 0; k < c; k++) dst[k] = -INFINITY;
        if (index != NULL) {
            for (int64_t k = 0; k < c; k++) index[k] = first;
        }
        for (int64_t i = 0; i < s->kernel_h; i++) {
            const int64_t iy = y0 + i;
            if (iy < 0 || iy >= h) continue;
            for (int64_t j = 0; j < s->kernel_w; j++) {
                const int64_t ix = x0 + j;
                if (ix < 0 || ix >= w) continue;
                const float *src = x + ((n * h + iy) * w + ix) * c;
                const int32_t position = (int32_t)(iy * w + ix);
                /* Strictly greater keeps the first maximum; v != v lets NaN through, as PyTorch. */
                if (index != NULL) {
                    for (int64_t k = 0; k < c; k++) {
                        const float v = src[k];
                        const bool take = v > dst[k] || v != v;
                        dst[k] = take ? v : dst[k];
                        index[k] = take ? position : index[k];
                    }
                } else {
                    for (int64_t k = 0; k < c; k++) {
                        const float v = src[k];
                        dst[k] = (v > dst[k] || v != v) ? v : dst[k];
                    }
                }
            }
        }
    }
    return CK_OK;
}

ck_status ck_maxpool2d_backward_f32(const float *grad, const int32_t *argmax, const ck_conv_shape *s,
                                    int accumulate, float *dx) {
    if (grad == NULL || argmax == NULL || s == NULL || dx == NULL) return CK_ERR_NULL_POINTER;
    int64_t oh, ow;
    ck_status status = pool_geometry(s, &oh, &ow);
    if (status != CK_OK) return status;
    const int64_t c = s->channels, h = s->height, w = s->width, pixels = s->batch * h * w;
    const int threads = ck_get_num_threads();
#pragma omp parallel for num_threads(threads) if (pixels * c > PARALLEL_MIN)
    for (int64_t p = 0; p < pixels; p++) {
        const int64_t n = p / (h * w), iy = (p / w) % h, ix = p % w;
        const int32_t position = (int32_t)(iy * w + ix);
        float *out = dx + p * c;
        if (!accumulate) memset(out, 0, (size_t)c * sizeof(float));
        int64_t oy_lo, oy_hi, ox_lo, ox_hi;
        covering_outputs(iy, s->pad_h, s->kernel_h, s->stride_h, oh, &oy_lo, &oy_hi);
        covering_outputs(ix, s->pad_w, s->kernel_w, s->stride_w, ow, &ox_lo, &ox_hi);
        for (int64_t oy = oy_lo; oy <= oy_hi; oy++) {
            for (int64_t ox = ox_lo; ox <= ox_hi; ox++) {
                const int64_t o = (n * oh + oy) * ow + ox;
                const float *g = grad + o * c;
                const int32_t *index = argmax + o * c;
                for (int64_t k = 0; k < c; k++) {
                    const float v = g[k]; /* unconditional load: the select then vectorises */
                    out[k] += index[k] == position ? v : 0.0f;
                }
            }
        }
    }
    return CK_OK;
}

ck_status ck_avgpool2d_forward_f32(const float *x, const ck_conv_shape *s, float *y) {
    if (x == NULL || s == NULL || y == NULL) return CK_ERR_NULL_POINTER;
    int64_t oh, ow;
    ck_status status = pool_geometry(s, &oh, &ow);
    if (status != CK_OK) return status;
    const int64_t c = s->channels, h = s->height, w = s->width, outputs = s->batch * oh * ow;
    const float divisor = (float)(s->kernel_h * s->kernel_w);
    const int threads = ck_get_num_threads();
#pragma omp parallel for num_threads(threads) if (outputs * c > PARALLEL_MIN)
    for (int64_t o = 0; o < outputs; o++) {
        const int64_t n = o / (oh * ow), oy = (o / ow) % oh, ox = o % ow;
        const int64_t y0 = oy * s->stride_h - s->pad_h, x0 = ox * s->stride_w - s->pad_w;
        float *dst = y + o * c;
        memset(dst, 0, (size_t)c * sizeof(float));
        for (int64_t i = 0; i < s->kernel_h; i++) {
            const int64_t iy = y0 + i;
            if (iy < 0 || iy >= h) continue;
            for (int64_t j = 0; j < s->kernel_w; j++) {
                const int64_t ix = x0 + j;
                if (ix < 0 || ix >= w) continue;
                const float *src = x + ((n * h + iy) * w + ix) * c;
                for (int64_t k = 0; k < c; k++) dst[k] += src[k];
            }
        }
        for (int64_t k = 0; k < c; k++) dst[k] /= divisor;
    }
    return CK_OK;
}

ck_status ck_avgpool2d_backward_f32(const float *grad, const ck_conv_shape *s, int accumulate, float *dx) {
    if (grad == NULL || s == NULL || dx == NULL) return CK_ERR_NULL_POINTER;
    int64_t oh, ow;
    ck_status status = pool_geometry(s, &oh, &ow);
    if (status != CK_OK) return status;
    const int64_t c = s->channels, h = s->height, w = s->width, pixels = s->batch * h * w;
    const float divisor = (float)(s->kernel_h * s->kernel_w);
    const int threads = ck_get_num_threads();
#pragma omp parallel for num_threads(threads) if (pixels * c > PARALLEL_MIN)
    for (int64_t p = 0; p < pixels; p++) {
        const int64_t n = p / (h * w), iy = (p / w) % h, ix = p % w;
        float *out = dx + p * c;
        if (!accumulate) memset(out, 0, (size_t)c * sizeof(float));
        int64_t oy_lo, oy_hi, ox_lo, ox_hi;
        covering_outputs(iy, s->pad_h, s->kernel_h, s->stride_h, oh, &oy_lo, &oy_hi);
        covering_outputs(ix, s->pad_w, s->kernel_w, s->stride_w, ow, &ox_lo, &ox_hi);
        for (int64_t oy = oy_lo; oy <= oy_hi; oy++) {
            for (int64_t ox = ox_lo; ox <= ox_hi; ox++) {
                const float *g = grad + ((n * oh + oy) * ow + ox) * c;
                for (int64_t k = 0; k < c; k++) out[k] += g[k] / divisor;
            }
        }
    }
    return CK_OK;
}

static bool nhwc_ok(int64_t batch, int64_t pixels, int64_t channels) {
    return ck_size_ok(batch) && ck_size_ok(pixels) && ck_size_ok(channels) && batch <= MAX_ELEMENTS / pixels &&
           batch * pixels <= MAX_ELEMENTS / channels;
}

ck_status ck_global_avgpool_forward_f32(const float *x, int64_t batch, int64_t pixels, int64_t channels, float *y) {
    if (x == NULL || y == NULL) return CK_ERR_NULL_POINTER;
    if (!nhwc_ok(batch, pixels, channels)) return CK_ERR_INVALID_SIZE;
    /* Tasks of (image, block of up to 256 channels) so the double accumulators fit on the stack. */
    enum { SPAN = 256 };
    const int64_t spans = (channels + SPAN - 1) / SPAN, tasks = batch * spans;
    const int threads = ck_get_num_threads();
#pragma omp parallel for num_threads(threads) if (batch * pixels * channels > PARALLEL_MIN)
    for (int64_t t = 0; t < tasks; t++) {
        const int64_t n = t / spans, k0 = (t % spans) * SPAN;
        const int64_t width = channels - k0 < SPAN ? channels - k0 : SPAN;
        double acc[SPAN];
        for (int64_t k = 0; k < width; k++) acc[k] = 0.0;
        const float *src = x + n * pixels * channels + k0;
        for (int64_t p = 0; p < pixels; p++) {
            for (int64_t k = 0; k < width; k++) acc[k] += (double)src[p * channels + k];
        }
        for (int64_t k = 0; k < width; k++) y[n * channels + k0 + k] = (float)(acc[k] / (double)pixels);
    }
    return CK_OK;
}

ck_status ck_global_avgpool_backward_f32(const float *grad, int64_t batch, int64_t pixels, int64_t channels,
                                         int accumulate, float *dx) {
    if (grad == NULL || dx == NULL) return CK_ERR_NULL_POINTER;
    if (!nhwc_ok(batch, pixels, channels)) return CK_ERR_INVALID_SIZE;
    const int64_t rows = batch * pixels;
    const float divisor = (float)pixels;
    const int threads = ck_get_num_threads();
#pragma omp parallel for num_threads(threads) if (rows * channels > PARALLEL_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *g = grad + (r / pixels) * channels;
        float *out = dx + r * channels;
        if (accumulate) {
            for (int64_t k = 0; k < channels; k++) out[k] += g[k] / divisor;
        } else {
            for (int64_t k = 0; k < channels; k++) out[k] = g[k] / divisor;
        }
    }
    return CK_OK;
}

static bool shortcut_ok(int64_t batch, int64_t height, int64_t width, int64_t channels, int64_t stride,
                        int64_t pad) {
    if (!ck_size_ok(stride) || pad < 0 || pad > CK_MAX_DIM || !ck_size_ok(height) || !ck_size_ok(width)) return false;
    if (channels + 2 * pad > CK_MAX_DIM || height > MAX_ELEMENTS / width) return false;
    return nhwc_ok(batch, height * width, channels + 2 * pad);
}

ck_status ck_shortcut_a_forward_f32(const float *x, int64_t batch, int64_t height, int64_t width,
                                    int64_t channels, int64_t stride, int64_t pad, float *y) {
    if (x == NULL || y == NULL) return CK_ERR_NULL_POINTER;
    if (!shortcut_ok(batch, height, width, channels, stride, pad)) return CK_ERR_INVALID_SIZE;
    const int64_t oh = (height + stride - 1) / stride, ow = (width + stride - 1) / stride;
    const int64_t oc = channels + 2 * pad, outputs = batch * oh * ow;
    const int threads = ck_get_num_threads();
#pragma omp parallel for num_threads(threads) if (outputs * oc > PARALLEL_MIN)
    for (int64_t o = 0; o < outputs; o++) {
        const int64_t n = o / (oh * ow), oy = (o / ow) % oh, ox = o % ow;
        float *dst = y + o * oc;
        memset(dst, 0, (size_t)pad * sizeof(float));
        memcpy(dst + pad, x + ((n * height + oy * stride) * width + ox * stride) * channels,
               (size_t)channels * sizeof(float));
        memset(dst + pad + channels, 0, (size_t)pad * sizeof(float));
    }
    return CK_OK;
}

ck_status ck_shortcut_a_backward_f32(const float *grad, int64_t batch, int64_t height, int64_t width,
                                     int64_t channels, int64_t stride, int64_t pad, int accumulate, float *dx) {
    if (grad == NULL || dx == NULL) return CK_ERR_NULL_POINTER;
    if (!shortcut_ok(batch, height, width, channels, stride, pad)) return CK_ERR_INVALID_SIZE;
    const int64_t oh = (height + stride - 1) / stride, ow = (width + stride - 1) / stride;
    const int64_t oc = channels + 2 * pad, pixels = batch * height * width;
    const int threads = ck_get_num_threads();
#pragma omp parallel for num_threads(threads) if (pixels * channels > PARALLEL_MIN)
    for (int64_t p = 0; p < pixels; p++) {
        const int64_t n = p / (height * width), iy = (p / width) % height, ix = p % width;
        float *out = dx + p * channels;
        if (iy % stride != 0 || ix % stride != 0) {
            if (!accumulate) memset(out, 0, (size_t)channels * sizeof(float));
            continue;
        }
        const float *g = grad + ((n * oh + iy / stride) * ow + ix / stride) * oc + pad;
        if (accumulate) {
            for (int64_t k = 0; k < channels; k++) out[k] += g[k];
        } else {
            memcpy(out, g, (size_t)channels * sizeof(float));
        }
    }
    return CK_OK;
}
