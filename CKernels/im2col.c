/* im2col.c — float im2col of NHWC input (the float baseline of convolution and the training forward). */
#include "internal.h"

#include <string.h>

ck_status ck_conv_output_size(const ck_conv_shape *s, int64_t *out_h, int64_t *out_w) {
    if (s == NULL) return CK_ERR_NULL_POINTER;
    if (!ck_size_ok(s->batch) || !ck_size_ok(s->height) || !ck_size_ok(s->width) || !ck_size_ok(s->channels) ||
        !ck_size_ok(s->kernel_h) || !ck_size_ok(s->kernel_w) || !ck_size_ok(s->stride_h) ||
        !ck_size_ok(s->stride_w) || s->pad_h < 0 || s->pad_w < 0 || s->pad_h > CK_MAX_DIM || s->pad_w > CK_MAX_DIM)
        return CK_ERR_INVALID_SIZE;
    int64_t ph = s->height + 2 * s->pad_h, pw = s->width + 2 * s->pad_w;
    if (s->kernel_h > ph || s->kernel_w > pw) return CK_ERR_SHAPE_MISMATCH;
    int64_t oh = (ph - s->kernel_h) / s->stride_h + 1, ow = (pw - s->kernel_w) / s->stride_w + 1;
    /* Every tensor the kernels touch must stay within 64-bit index arithmetic. */
    if (s->batch * oh > CK_MAX_DIM || s->batch * oh * ow > CK_MAX_DIM ||
        s->batch * s->height * s->width > CK_MAX_DIM || s->kernel_h * s->kernel_w > CK_MAX_DIM ||
        s->kernel_h * s->kernel_w * s->channels > CK_MAX_DIM)
        return CK_ERR_INVALID_SIZE;
    if (out_h != NULL) *out_h = oh;
    if (out_w != NULL) *out_w = ow;
    return CK_OK;
}

ck_status ck_im2col_nhwc_f32(const float *input, const ck_conv_shape *s, float *out) {
    if (input == NULL || s == NULL || out == NULL) return CK_ERR_NULL_POINTER;
    int64_t oh, ow;
    ck_status status = ck_conv_output_size(s, &oh, &ow);
    if (status != CK_OK) return status;
    const int64_t c = s->channels, kh = s->kernel_h, kw = s->kernel_w;
    const int64_t row = kh * kw * c, pixels = s->batch * oh * ow;
    int threads = ck_get_num_threads();
#pragma omp parallel for num_threads(threads) schedule(static) if (pixels * row > 65536)
    for (int64_t p = 0; p < pixels; p++) {
        int64_t n = p / (oh * ow), y = (p / ow) % oh, x = p % ow;
        float *dst = out + p * row;
        for (int64_t i = 0; i < kh; i++) {
            int64_t iy = y * s->stride_h - s->pad_h + i;
            for (int64_t j = 0; j < kw; j++) {
                int64_t ix = x * s->stride_w - s->pad_w + j;
                float *tap = dst + (i * kw + j) * c;
                if (iy < 0 || iy >= s->height || ix < 0 || ix >= s->width) {
                    memset(tap, 0, (size_t)c * sizeof(float));
                } else {
                    memcpy(tap, input + ((n * s->height + iy) * s->width + ix) * c, (size_t)c * sizeof(float));
                }
            }
        }
    }
    return CK_OK;
}
