/*
 * ckernels_train.h — kernels used by training (float loops over pixels: col2im, batch norm, element-wise
 * passes, fused estimator backward). Included by ckernels.h; same conventions.
 */
#ifndef CKERNELS_TRAIN_H
#define CKERNELS_TRAIN_H

#include <stdint.h>

#include "ckernels.h" /* ck_status, ck_conv_shape (the include guards make either include order work) */

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------- */
/* Training kernels: conventions                                                                    */
/*  - Float tensors are contiguous and row-major; activations NHWC, so a per-channel pass sees a      */
/*    `rows × channels` matrix with rows = N·H·W.                                                    */
/*  - Backward kernels take `accumulate`: 0 overwrites the gradient buffer (its old contents are     */
/*    never read, so it may be uninitialised), nonzero adds to it (a tensor used twice gets the sum). */
/*  - Reductions accumulate in double over fixed blocks of rows combined in a fixed order, so        */
/*    results do not depend on the thread count.                                                    */
/*  - Element counts may exceed 2³¹ (up to 2⁴⁰); each spatial dimension is limited as in ck_conv_shape.*/

/* Element-wise ------------------------------------------------------------------------------------ */

/** out[i] = a[i] + b[i] for i < n; `out` may alias `a` or `b`. */
ck_status ck_add_f32(const float *a, const float *b, int64_t n, float *out);

/** y[i] = alpha·x[i] + beta·y[i]; with beta == 0 y is only written (old contents ignored, NaN included). */
ck_status ck_axpby_f32(int64_t n, float alpha, const float *x, float beta, float *y);

/** y = max(x, 0) as PyTorch's relu (NaN stays NaN); `y` may alias `x`. */
ck_status ck_relu_forward_f32(const float *x, int64_t n, float *y);

/** dx (= or +=) grad where x > 0, slope_at_zero·grad where x = 0, else 0. PyTorch's rule is slope_at_zero = 0;
 *  after a binary convolution, whose outputs are exactly 0 for a share of pixels, other values in [0, 1] are
 *  useful (see ResNet20's `reluGradientAtZero`). */
ck_status ck_relu_backward_f32(const float *x, const float *grad, int64_t n, float slope_at_zero, int accumulate,
                               float *dx);

/** y = clamp(x, min_value, max_value) as PyTorch's hardtanh (NaN stays NaN); `y` may alias `x`. */
ck_status ck_hardtanh_forward_f32(const float *x, int64_t n, float min_value, float max_value, float *y);

/** dx (= or +=) grad where min_value < x < max_value, else 0 (zero on the boundary, as PyTorch). */
ck_status ck_hardtanh_backward_f32(const float *x, const float *grad, int64_t n, float min_value, float max_value,
                                   int accumulate, float *dx);

/** out[b][j][i] (= or +=) x[b][i][j] for `batch` row-major `rows × cols` matrices (OIHW↔OHWI, NHWC↔NCHW). */
ck_status ck_batched_transpose_f32(const float *x, int64_t batch, int64_t rows, int64_t cols, int accumulate,
                                   float *out);

/** Copies `row` (`cols` floats) into each of the `rows` rows of `out` (a bias before a GEMM with beta = 1). */
ck_status ck_broadcast_rows_f32(const float *row, int64_t rows, int64_t cols, float *out);

/* Per-channel passes (batch norm, biases) --------------------------------------------------------- */

/** Per channel, in double: Σx over the rows when `center` is NULL, else Σ(x − center[c])². Sums fixed blocks of rows
 *  and adds them in order (independent of the thread count): the two passes of ck_channel_mean_var_f32, for callers
 *  that combine them across processes (synchronised batch norm). */
ck_status ck_channel_moment_f64(const float *x, int64_t rows, int64_t channels, const double *center, double *out);

/** Per-column mean and biased variance (divisor `rows`) of a `rows × channels` matrix, two-pass in double. */
ck_status ck_channel_mean_var_f32(const float *x, int64_t rows, int64_t channels, float *mean, float *var);

/** y = x·scale[c] + shift[c] per column c; NULL scale means 1, NULL shift means 0; `y` may alias `x`. */
ck_status ck_channel_affine_f32(const float *x, int64_t rows, int64_t channels, const float *scale,
                                const float *shift, float *y);

/** ck_channel_sums_f32 with the double sums before rounding (for synchronised batch norm). */
ck_status ck_channel_sums_f64(const float *g, const float *x, const float *center, int64_t rows, int64_t channels,
                              double *sum_g, double *sum_gx);

/**
 * Per-column sums of a `rows × channels` matrix: sum_g[c] = Σ g[r][c] and, when `x` and `sum_gx` are not
 * NULL, sum_gx[c] = Σ g[r][c]·(x[r][c] − center[c]) (NULL center means 0). Written, not accumulated.
 */
ck_status ck_channel_sums_f32(const float *g, const float *x, const float *center, int64_t rows, int64_t channels,
                              float *sum_g, float *sum_gx);

/**
 * dx (= or +=) a[c]·g + b[c]·(x − center[c]) + k[c] per column c: the input gradient of batch norm once the
 * per-channel coefficients are known. NULL b (with x and center unused) or NULL k means 0.
 */
ck_status ck_batchnorm_backward_input_f32(const float *g, const float *x, const float *center, const float *a,
                                          const float *b, const float *k, int64_t rows, int64_t channels,
                                          int accumulate, float *dx);

/**
 * The input gradient of batch norm applied to y = relu(pre), through the ReLU: the value
 * ck_batchnorm_backward_input_f32 computes for y (with `y` as its x; b == NULL for evaluation mode), then the rule of
 * ck_relu_backward_f32 with `pre` and `slope_at_zero`, written (or added, with `accumulate`) to `dx`, with the same
 * float operations as the two kernels in turn, without the gradient of y in memory between them.
 */
ck_status ck_batchnorm_relu_backward_input_f32(const float *g, const float *y, const float *center, const float *a,
                                               const float *b, const float *k, const float *pre, float slope_at_zero,
                                               int64_t rows, int64_t channels, int accumulate, float *dx);

/* Convolution ------------------------------------------------------------------------------------- */

/**
 * Adjoint of `ck_im2col_nhwc_f32`: adds every column entry back to the input pixel it was copied from
 * (entries that came from padding are dropped). `cols` is `N·OH·OW × kernel_h·kernel_w·C`; `input_grad` is
 * the NHWC input's shape. Each input pixel gathers its own contributions, so threads never collide.
 */
ck_status ck_col2im_nhwc_f32(const float *cols, const ck_conv_shape *shape, int accumulate, float *input_grad);

/*
 * Direct convolution (no im2col) of an NHWC input `[N, H, W, C]` with weight rows in OHWI order
 * `[out_channels][kernel_h·kernel_w·C]` (columns (kh, kw, c), as an im2col row), zero padding; the output is
 * `[N, OH, OW, out_channels]`. Register tiles of pixels × 16 (AVX-512) or 8 (AVX2) channels; for the 3×3
 * layers of 16–64 channels of small networks, where im2col + sgemm makes thin GEMMs. The three paths give
 * identical bits (the same fused multiply-adds in the same order); results are deterministic for a given
 * thread count, and the forward and the input gradient do not depend on it at all.
 */

/** out (= or +=) the convolution of `input` with the weight. */
ck_status ck_conv2d_forward_f32(const float *input, const ck_conv_shape *shape, const float *weight_rows,
                                int64_t out_channels, int accumulate, float *out);

/**
 * input_grad (= or +=) the gradient of that convolution with respect to its input, from `grad`, the output's
 * gradient `[N, OH, OW, out_channels]` (a transposed convolution; no product with a stride's skipped pixels).
 */
ck_status ck_conv2d_backward_input_f32(const float *grad, const ck_conv_shape *shape, const float *weight_rows,
                                       int64_t out_channels, int accumulate, float *input_grad);

struct ck_estimator; /* with the estimators, below */

/**
 * The input gradient of a binary convolution's sign(input), through an estimator: input_grad (= or +=)
 * r'(input)·[the input gradient of ck_conv2d_backward_input_f32], with `e`'s r' (see ck_estimator below)
 * applied to each destination row as it is written, while the row is still in cache. Bit for bit
 * ck_conv2d_backward_input_f32 into a buffer followed by ck_estimator_backward_f32 from it, which it saves a
 * pass over both (`input` is N·H·W·C floats, as `input_grad`).
 */
ck_status ck_conv2d_backward_sign_input_f32(const float *grad, const ck_conv_shape *shape, const float *weight_rows,
                                            int64_t out_channels, const float *input, const struct ck_estimator *e,
                                            int accumulate, float *input_grad);

/**
 * weight_grad (OHWI rows as above, overwritten) = Σ over output pixels of grad ⊗ the input patch the pixel
 * reads, of `input` or, with `sign_input`, of sign(input) (±1, +1 for 0, −0 and NaN; padding counts 0), the
 * binary convolution's activations without materialising them. Each thread sums a fixed share of the images;
 * the shares are added in thread order.
 */
ck_status ck_conv2d_backward_weight_f32(const float *input, const ck_conv_shape *shape, const float *grad,
                                        int64_t out_channels, int sign_input, float *weight_grad);

/* Pooling and shortcut ---------------------------------------------------------------------------- */

/**
 * Max-pool of an NHWC input as PyTorch (padding counts as −∞, first maximum wins, NaN propagates;
 * requires pad ≤ kernel/2 so every window sees the input). `argmax` (NULL when no backward follows) gets,
 * per output element, the input position iy·W + ix chosen.
 */
ck_status ck_maxpool2d_forward_f32(const float *x, const ck_conv_shape *shape, float *y, int32_t *argmax);

/** Gradient of max-pool: each input element (= or +=) the output gradients whose argmax chose it. */
ck_status ck_maxpool2d_backward_f32(const float *grad, const int32_t *argmax, const ck_conv_shape *shape,
                                    int accumulate, float *dx);

/** Average pool of an NHWC input with zero padding counted in the divisor (PyTorch's count_include_pad). */
ck_status ck_avgpool2d_forward_f32(const float *x, const ck_conv_shape *shape, float *y);

/** Gradient of `ck_avgpool2d_forward_f32`. */
ck_status ck_avgpool2d_backward_f32(const float *grad, const ck_conv_shape *shape, int accumulate, float *dx);

/** y[n][c] = mean over the `pixels` rows of x[n] (NHWC with pixels = H·W), accumulated in double. */
ck_status ck_global_avgpool_forward_f32(const float *x, int64_t batch, int64_t pixels, int64_t channels, float *y);

/** dx[n][p][c] (= or +=) grad[n][c] / pixels. */
ck_status ck_global_avgpool_backward_f32(const float *grad, int64_t batch, int64_t pixels, int64_t channels,
                                         int accumulate, float *dx);

/**
 * ResNet "option A" shortcut of NHWC x: y[n][oy][ox][pad + c] = x[n][oy·stride][ox·stride][c], zero in the
 * `pad` channels added on each side. y is `batch × ⌈height/stride⌉ × ⌈width/stride⌉ × (channels + 2·pad)`.
 */
ck_status ck_shortcut_a_forward_f32(const float *x, int64_t batch, int64_t height, int64_t width,
                                    int64_t channels, int64_t stride, int64_t pad, float *y);

/** Gradient of `ck_shortcut_a_forward_f32` (zero at the pixels the stride skips). */
ck_status ck_shortcut_a_backward_f32(const float *grad, int64_t batch, int64_t height, int64_t width,
                                     int64_t channels, int64_t stride, int64_t pad, int accumulate, float *dx);

/* Loss -------------------------------------------------------------------------------------------- */

/**
 * Softmax cross-entropy per row of `rows × classes` logits, in double with the maximum subtracted:
 * losses[r] = logsumexp(logits[r]) − logits[r][labels[r]], probs = softmax(logits) (for the backward).
 * Labels outside 0 ..< classes give CK_ERR_INVALID_SIZE.
 */
ck_status ck_cross_entropy_forward_f32(const float *logits, const int64_t *labels, int64_t rows, int64_t classes,
                                       float *losses, float *probs);

/** dlogits (= or +=) scale·(probs − onehot(labels)), e.g. scale = upstream gradient / rows for the mean. */
ck_status ck_cross_entropy_backward_f32(const float *probs, const int64_t *labels, int64_t rows, int64_t classes,
                                        float scale, int accumulate, float *dlogits);


/* ---------------------------------------------------------------------------------------------- */
/* Estimators (the backward of sign) and binary weights                                             */
/*  - sign(0) = +1 everywhere here, as in the bit packing (negative values, and only they, are −1).  */
/*  - Each estimator backward is one pass: dx (= or +=) grad · r'(x); `dx` may alias `grad`.          */
/*  - The three kernel paths (scalar, AVX2, AVX-512; see ck_isa_active) give identical bits.          */

/**
 * ReSTE: r'(x) = 0 where |x| > threshold; (1/o)·|x|^((1−o)/o) where delta < |x| ≤ threshold (the derivative
 * of sign(x)·|x|^(1/o)); delta^(1/o)/delta where |x| ≤ delta (the secant on [0, delta], avoiding the pole at
 * 0). With o = 1 it is the clipped STE at `threshold`. NaN x gives r' = 0. The power is a polynomial
 * evaluation accurate to a few float ulps. Requires finite o > 0 and 0 < delta ≤ threshold, finite
 * (else CK_ERR_INVALID_SIZE); the method uses o ≥ 1, threshold 1.5, delta 0.1.
 */
ck_status ck_reste_backward_f32(const float *x, const float *grad, int64_t n, float o, float threshold, float delta,
                                int accumulate, float *dx);

/** Clipped STE (BinaryConnect): dx (= or +=) grad where |x| ≤ limit, else 0 (a select, not a product). limit ≥ 0. */
ck_status ck_clipped_ste_backward_f32(const float *x, const float *grad, int64_t n, float limit, int accumulate,
                                      float *dx);

/** Identity STE: dx (= or +=) grad (r' = 1 everywhere, so the input values are not needed). */
ck_status ck_identity_ste_backward_f32(const float *grad, int64_t n, int accumulate, float *dx);

/** ApproxSign (Bi-Real Net): r'(x) = 2 − 2|x| where |x| ≤ 1, else 0. */
ck_status ck_approx_sign_backward_f32(const float *x, const float *grad, int64_t n, int accumulate, float *dx);

/**
 * EDE (IR-Net): r'(x) = k·t·(1 − tanh²(t·x)), evaluated as k·t·4w/(1 + w)² with w = exp(−2|t·x|) (no
 * cancellation for large |t·x|; 0 once 2|t·x| > 87, and for NaN x). Requires finite t > 0 and finite k.
 */
ck_status ck_ede_backward_f32(const float *x, const float *grad, int64_t n, float t, float k, int accumulate,
                              float *dx);

/** The estimators above as data, for kernels that apply one as they write a gradient. */
typedef enum ck_estimator_kind {
    CK_ESTIMATOR_RESTE = 0,       /**< o, threshold, delta */
    CK_ESTIMATOR_CLIPPED_STE = 1, /**< threshold (the limit) */
    CK_ESTIMATOR_IDENTITY = 2,
    CK_ESTIMATOR_APPROX_SIGN = 3,
    CK_ESTIMATOR_EDE = 4          /**< t, k */
} ck_estimator_kind;

/** One estimator with its parameters, checked as by its own function (else CK_ERR_INVALID_SIZE). */
typedef struct ck_estimator {
    ck_estimator_kind kind;
    float o, threshold, delta;
    float t, k;
} ck_estimator;

/** The estimator `e`'s pass: the same as its own function above (ck_reste_backward_f32, ...), bit for bit. */
ck_status ck_estimator_backward_f32(const ck_estimator *e, const float *x, const float *grad, int64_t n,
                                    int accumulate, float *dx);

/** y (= or +=) scale·sign(x) (−scale where x < 0, else +scale; −0 and NaN count as +1); `y` may alias `x`. */
ck_status ck_sign_f32(const float *x, int64_t n, float scale, int accumulate, float *y);

/**
 * mean = Σ|x|/n and, when `squared_deviations` is not NULL, Σ(|x| − mean)² (two passes, double). α = mean|W|
 * of a binary layer; the variance of |∂L/∂W| is squared_deviations/(n − 1) (unbiased) or /n.
 */
ck_status ck_abs_moments_f32(const float *x, int64_t n, double *mean, double *squared_deviations);

/** out = Σ g[i]·sign(x[i]) in double: with ∂α/∂W = sign(W)/N, the gradient through α is sign(W)·out/N. */
ck_status ck_sign_dot_f32(const float *x, const float *g, int64_t n, double *out);

/**
 * ReSTE's estimating error of one weight tensor: out = ‖sign(w)·|w|^(1/o) − sign(w)‖₂ (libm pow in double).
 * Requires finite o > 0.
 */
ck_status ck_estimating_error_f32(const float *w, int64_t n, float o, double *out);

#ifdef __cplusplus
}
#endif

#endif /* CKERNELS_TRAIN_H */
