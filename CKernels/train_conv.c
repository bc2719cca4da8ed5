/* train_conv.c — the backward half of float im2col convolution: col2im (NHWC), the adjoint of im2col. */
#include "internal.h"

#include <string.h>

ck_status ck_col2im_nhwc_f32(const float *cols, const ck_conv_shape *s, int accumulate, float *input_grad) {
    if (cols == NULL || s == NULL || input_grad == NULL) return CK_ERR_NULL_POINTER;
    int64_t oh, ow;
    ck_status status = ck_conv_output_size(s, &oh, &ow);
    if (status != CK_OK) return status;
    const int64_t c = s->channels, kh = s->kernel_h, kw = s->kernel_w, h = s->height, w = s->width;
    const int64_t row = kh * kw * c, pixels = s->batch * h * w;
    const int threads = ck_get_num_threads();
    /* A scatter over column rows would have overlapping windows write the same pixel from different threads;
     * gathering per input pixel (which taps of which output pixels read it) needs no synchronisation. */
#pragma omp parallel for num_threads(threads) if (pixels * c > 16384)
    for (int64_t p = 0; p < pixels; p++) {
        const int64_t n = p / (h * w), iy = (p / w) % h, ix = p % w;
        float *out = input_grad + p * c;
        if (!accumulate) memset(out, 0, (size_t)c * sizeof(float));
        for (int64_t i = 0; i < kh; i++) {
            const int64_t ty = iy + s->pad_h - i;
            if (ty < 0 || ty % s->stride_h != 0) continue;
            const int64_t oy = ty / s->stride_h;
            if (oy >= oh) continue;
            for (int64_t j = 0; j < kw; j++) {
                const int64_t tx = ix + s->pad_w - j;
                if (tx < 0 || tx % s->stride_w != 0) continue;
                const int64_t ox = tx / s->stride_w;
                if (ox >= ow) continue;
                const float *src = cols + ((n * oh + oy) * ow + ox) * row + (i * kw + j) * c;
                for (int64_t k = 0; k < c; k++) out[k] += src[k];
            }
        }
    }
    return CK_OK;
}
