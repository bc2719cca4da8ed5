/* train_conv.c — the backward half of float im2col convolution: col2im (NHWC), the adjoint of im2col. */
#include "internal.h"

#include <string.h>

/* Outputs o (0 ≤ o < outputs) whose window [o·stride − pad, o·stride − pad + kernel) covers input i: [*lo, *hi]
 * (empty when *lo > *hi). Two divisions per row or column instead of two per tap. */
static inline void covering_outputs(int64_t i, int64_t pad, int64_t kernel, int64_t stride, int64_t outputs,
                                    int64_t *lo, int64_t *hi) {
    const int64_t t = i + pad, first = t - kernel + 1;
    *lo = first <= 0 ? 0 : (first + stride - 1) / stride;
    *hi = t / stride < outputs - 1 ? t / stride : outputs - 1;
}

ck_status ck_col2im_nhwc_f32(const float *cols, const ck_conv_shape *s, int accumulate, float *input_grad) {
    if (cols == NULL || s == NULL || input_grad == NULL) return CK_ERR_NULL_POINTER;
    int64_t oh, ow;
    ck_status status = ck_conv_output_size(s, &oh, &ow);
    if (status != CK_OK) return status;
    const int64_t c = s->channels, kh = s->kernel_h, kw = s->kernel_w, h = s->height, w = s->width;
    const int64_t row = kh * kw * c, lines = s->batch * h;
    const int threads = ck_get_num_threads();
    /* A scatter over column rows would have overlapping windows write the same pixel from different threads;
     * gathering per input pixel (which taps of which output pixels read it) needs no synchronisation. */
#pragma omp parallel for num_threads(threads) if (lines * w * c > 16384)
    for (int64_t line = 0; line < lines; line++) {
        const int64_t n = line / h, iy = line % h;
        int64_t oy_lo, oy_hi;
        covering_outputs(iy, s->pad_h, kh, s->stride_h, oh, &oy_lo, &oy_hi);
        for (int64_t ix = 0; ix < w; ix++) {
            float *out = input_grad + (line * w + ix) * c;
            if (!accumulate) memset(out, 0, (size_t)c * sizeof(float));
            int64_t ox_lo, ox_hi;
            covering_outputs(ix, s->pad_w, kw, s->stride_w, ow, &ox_lo, &ox_hi);
            for (int64_t oy = oy_lo; oy <= oy_hi; oy++) {
                const int64_t i = iy + s->pad_h - oy * s->stride_h;
                for (int64_t ox = ox_lo; ox <= ox_hi; ox++) {
                    const int64_t j = ix + s->pad_w - ox * s->stride_w;
                    const float *src = cols + ((n * oh + oy) * ow + ox) * row + (i * kw + j) * c;
                    for (int64_t k = 0; k < c; k++) out[k] += src[k];
                }
            }
        }
    }
    return CK_OK;
}
