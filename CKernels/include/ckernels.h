/*
 * ckernels.h — the C API of swift-bnn's kernels.
 *
 * Conventions shared by every function here:
 *  - Bits: a packed bit is 1 where the value is negative (−1) and 0 where it is ≥ 0 (+1), so sign(0) = +1.
 *    Values are packed along the innermost (channel) dimension into 64-bit words, bit j of word w holding
 *    element 64·w + j. Leftover bits of the last word are zero; since they are zero in both operands they
 *    add nothing to a dot product.
 *  - Layouts are row-major. Packed activations are NHWC: `rows = N·H·W`, each row `ck_words(C)` words.
 *  - Every function returns CK_OK or an error code and never aborts on bad arguments.
 *    `ck_status_message` turns a code into text.
 *  - No function keeps static scratch memory: all are reentrant and may be called from several threads.
 *  - Parallel work uses OpenMP with `ck_get_num_threads()` threads.
 */
#ifndef CKERNELS_H
#define CKERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------- */
/* Status codes                                                                                    */

/** Result of every fallible kernel call. */
typedef enum ck_status {
    CK_OK = 0,
    CK_ERR_NULL_POINTER = 1,   /**< a required pointer argument is NULL */
    CK_ERR_INVALID_SIZE = 2,   /**< a size, stride or count is zero, negative or too large */
    CK_ERR_SHAPE_MISMATCH = 3, /**< sizes are individually valid but inconsistent with each other */
    CK_ERR_OUT_OF_MEMORY = 4,  /**< an allocation failed */
    CK_ERR_UNSUPPORTED = 5,    /**< the request is valid but this CPU or build cannot serve it */
    CK_ERR_BLAS_UNAVAILABLE = 6 /**< OpenBLAS could not be loaded */
} ck_status;

/** Human-readable text for a status code (static storage, never NULL). */
const char *ck_status_message(ck_status status);

/* ---------------------------------------------------------------------------------------------- */
/* CPU features, kernel selection and threads                                                      */

/** Instruction-set paths of the binary kernels. */
typedef enum ck_isa {
    CK_ISA_SCALAR = 0, /**< portable C */
    CK_ISA_AVX2 = 1,   /**< AVX2, popcount by nibble lookup (vpshufb) */
    CK_ISA_AVX512 = 2  /**< AVX-512F + VPOPCNTDQ */
} ck_isa;

/** Best path this CPU supports. */
ck_isa ck_isa_best(void);

/** 1 if this CPU (and build) can run `isa`, else 0. */
int ck_isa_supported(ck_isa isa);

/**
 * The path kernels use now: the one forced by `ck_isa_force`, else the one named by the environment
 * variable BNN_ISA (scalar | avx2 | avx512, read once), else the best supported one.
 */
ck_isa ck_isa_active(void);

/**
 * Forces a path for later calls in this process (tests use it to run each path). CK_ERR_UNSUPPORTED if the
 * CPU cannot run it, CK_ERR_INVALID_SIZE if `isa` is not a ck_isa value.
 */
ck_status ck_isa_force(ck_isa isa);

/** Lower-case name of a path ("scalar", "avx2", "avx512"). */
const char *ck_isa_name(ck_isa isa);

/**
 * The processor, as benchmarks print it beside their figures: the first processor's model name with its family and
 * model numbers from /proc/cpuinfo, e.g. "AMD EPYC (family 25, model 17)"; "unknown CPU" where that file cannot be
 * read. Read once; the string lives as long as the process.
 */
const char *ck_cpu_name(void);

/** Sets the number of OpenMP threads the kernels use (n ≥ 1). */
ck_status ck_set_num_threads(int n);

/** Threads the kernels use: the last `ck_set_num_threads`, else OpenMP's default (OMP_NUM_THREADS). */
int ck_get_num_threads(void);

/** Number of 64-bit words that hold `bits` packed bits. */
static inline int64_t ck_words(int64_t bits) { return (bits + 63) / 64; }

/* ---------------------------------------------------------------------------------------------- */
/* Sign and bit-packing                                                                             */

/**
 * Packs the signs of a row-major `rows × cols` float matrix: out is `rows × ck_words(cols)` words.
 * For NHWC activations pass rows = N·H·W and cols = C.
 */
ck_status ck_pack_signs(const float *x, int64_t rows, int64_t cols, uint64_t *out);

/** Packs the signs of an NCHW float tensor into packed NHWC (`n·h·w` rows of `ck_words(c)` words). */
ck_status ck_pack_signs_nchw(const float *x, int64_t n, int64_t c, int64_t h, int64_t w, uint64_t *out);

/** Unpacks `rows × ck_words(cols)` words into a `rows × cols` matrix of ±1.0f. */
ck_status ck_unpack_signs(const uint64_t *bits, int64_t rows, int64_t cols, float *out);

/* ---------------------------------------------------------------------------------------------- */
/* XNOR-popcount GEMM                                                                               */

/**
 * Right-hand operand of `ck_bgemm_packed`, packed once into panels and reusable across calls and threads.
 * Its layout does not depend on the ISA path.
 */
typedef struct ck_bgemm_weights ck_bgemm_weights;

/**
 * Packs `b` (`n` rows of `ck_words(k)` words, the ±1 vectors of length k as bits) into panels.
 * On success `*out` owns new memory, released with `ck_bgemm_weights_destroy`.
 */
ck_status ck_bgemm_weights_create(const uint64_t *b, int64_t n, int64_t k, ck_bgemm_weights **out);

/** Releases packed weights (NULL is allowed). */
void ck_bgemm_weights_destroy(ck_bgemm_weights *w);

/** Rows (n) and vector length in bits (k) of packed weights; either pointer may be NULL. */
ck_status ck_bgemm_weights_shape(const ck_bgemm_weights *w, int64_t *n, int64_t *k);

/**
 * out[i][j] = Σ_t a[i][t]·b[j][t] over ±1 vectors = k − 2·popcount(a_i XOR b_j), for i < m, j < n.
 * `a` is `m` rows of `ck_words(k)` words (leftover bits zero); `out` has row stride `ldo ≥ n`.
 */
ck_status ck_bgemm_packed(const uint64_t *a, int64_t m, const ck_bgemm_weights *w, int32_t *out,
                          int64_t ldo);

/** One-shot form of `ck_bgemm_packed`: packs `b` (`n × ck_words(k)` words) for this call only. */
ck_status ck_bgemm(const uint64_t *a, const uint64_t *b, int64_t m, int64_t n, int64_t k, int32_t *out);

/* ---------------------------------------------------------------------------------------------- */
/* Binary convolution                                                                               */

/** Geometry of a 2-d convolution or pooling over an NHWC input. */
typedef struct ck_conv_shape {
    int64_t batch, height, width, channels; /**< input N, H, W, C */
    int64_t kernel_h, kernel_w;
    int64_t stride_h, stride_w;
    int64_t pad_h, pad_w; /**< zero padding on each side */
} ck_conv_shape;

/** Output height and width of `shape`; fails if the window does not fit. */
ck_status ck_conv_output_size(const ck_conv_shape *shape, int64_t *out_h, int64_t *out_w);

/**
 * Binary convolution weights: sign(W) packed once, with what the exact zero-padding correction needs.
 * Patches of kernel_h·kernel_w·C bits are stored either one word-aligned pixel per tap or, when that
 * saves words (C not a multiple of 64), as one contiguous bit string (bit-level im2col).
 */
typedef struct ck_bconv_weights ck_bconv_weights;

/** Packs sign(W) of float weights in PyTorch's OIHW layout (`out_channels × channels × kh × kw`). */
ck_status ck_bconv_weights_create(const float *w_oihw, int64_t out_channels, int64_t channels,
                                  int64_t kernel_h, int64_t kernel_w, ck_bconv_weights **out);

/**
 * Same from already packed signs: `bits` holds `out_channels · kernel_h · kernel_w` rows (order O, kh, kw)
 * of `ck_words(channels)` words, i.e. OHWI with channels packed.
 */
ck_status ck_bconv_weights_create_from_bits(const uint64_t *bits, int64_t out_channels, int64_t channels,
                                            int64_t kernel_h, int64_t kernel_w, ck_bconv_weights **out);

/** Releases binary convolution weights (NULL is allowed). */
void ck_bconv_weights_destroy(ck_bconv_weights *w);

/** Output channels, input channels and kernel size of `w`; any pointer may be NULL. */
ck_status ck_bconv_weights_dims(const ck_bconv_weights *w, int64_t *out_channels, int64_t *channels,
                                int64_t *kernel_h, int64_t *kernel_w);

/** 1 if `w` uses the bit-level patch layout, 0 if word-per-pixel; -1 if w is NULL. */
int ck_bconv_weights_bit_level(const ck_bconv_weights *w);

/** Flags of `ck_output_transform`. */
enum {
    CK_RELU_BEFORE = 1, /**< y = max(acc, 0) before the multiply/add */
    CK_RELU_AFTER = 2   /**< y = max(y, 0) after the multiply/add and the residual add */
};

/**
 * What a binary convolution writes, computed in one pass from the exact integer result acc[p][o]:
 *   y = (flags & CK_RELU_BEFORE ? max(acc, 0) : acc) · scale[o] + bias[o]
 *   y += residual[p][o]                      (if residual)
 *   y = max(y, 0)                            (if flags & CK_RELU_AFTER)
 * and stores any of: acc itself (`out_int`), y (`out`), the packed sign of y (`out_bits`, NHWC, sign(0)=+1).
 * All outputs are NHWC with `out_channels` channels. At least one output must be non-NULL.
 */
typedef struct ck_output_transform {
    const float *scale;    /**< per output channel; NULL means 1 */
    const float *bias;     /**< per output channel; NULL means 0 */
    const float *residual; /**< NHWC, same shape as the output; NULL for none */
    int flags;             /**< CK_RELU_BEFORE | CK_RELU_AFTER */
    int32_t *out_int;      /**< exact dot products of the zero-padded ±1 convolution, or NULL */
    float *out;            /**< y, or NULL */
    uint64_t *out_bits;    /**< sign bits of y, `ck_words(out_channels)` words per pixel, or NULL */
} ck_output_transform;

/**
 * Binary 2-d convolution of packed NHWC input (`shape->batch·height·width` rows of `ck_words(channels)`
 * words) with `w`. Zero padding is exact: every output equals the float convolution of the ±1 input
 * padded with zeros. Unknown bits in `transform->flags` are rejected with CK_ERR_INVALID_SIZE; weights made
 * for another channel count or kernel size with CK_ERR_SHAPE_MISMATCH.
 */
ck_status ck_bconv2d(const uint64_t *input, const ck_conv_shape *shape, const ck_bconv_weights *w,
                     const ck_output_transform *transform);

/**
 * Binary max-pool of packed NHWC input. With bit 1 meaning −1, max over ±1 values is the AND of the
 * bits in the window; padded positions are ignored (as PyTorch pads max-pool with −∞). As in PyTorch the
 * padding may be at most half the window (2·pad ≤ kernel), else CK_ERR_SHAPE_MISMATCH. The output is packed
 * NHWC with the same channel count.
 */
ck_status ck_bmaxpool2d(const uint64_t *input, const ck_conv_shape *shape, uint64_t *out);

/* ---------------------------------------------------------------------------------------------- */
/* Float kernels                                                                                    */

/**
 * Float im2col of an NHWC input: row p = output pixel (n, oh, ow), columns (kh, kw, c), zero where the
 * window crosses the padding. `out` is `N·OH·OW × kernel_h·kernel_w·C` floats.
 */
ck_status ck_im2col_nhwc_f32(const float *input, const ck_conv_shape *shape, float *out);

/**
 * Row-major single-precision GEMM through OpenBLAS: C = alpha·op(A)·op(B) + beta·C, op(X) = X or Xᵀ
 * when trans_x is nonzero. OpenBLAS is loaded on first use; if the user has not set OPENBLAS_CORETYPE and
 * the CPU has AVX-512, SkylakeX kernels are selected (OpenBLAS 0.3.21 does not recognise some AVX-512
 * CPUs and would fall back to much slower generic kernels). Never call it inside an OpenMP parallel region.
 */
ck_status ck_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                   int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/** Loads OpenBLAS now (idempotent); CK_ERR_BLAS_UNAVAILABLE if it cannot be found. */
ck_status ck_blas_load(void);

/** The kernel family ("core") OpenBLAS runs, e.g. "SkylakeX"; "unavailable" if it cannot be loaded. */
const char *ck_blas_core(void);

/** Sets OpenBLAS's thread count (n ≥ 1). */
ck_status ck_blas_set_num_threads(int n);

/* ---------------------------------------------------------------------------------------------- */
/* Measurement                                                                                      */

/**
 * Measures the machine's in-register XNOR + popcount + add throughput on the active path, with
 * `threads` threads for about `seconds`, and stores binary multiply-accumulates per second in `*out`.
 * Twelve independent accumulators; no memory traffic and no loop-carried dependency beyond them.
 */
ck_status ck_popcount_peak(int threads, double seconds, double *out);

/**
 * Measures the machine's in-register float multiply-add throughput on the active path (fused multiply-adds of
 * 16 lanes on AVX-512, 8 on AVX2, fmaf on the portable path, as the float convolution kernels use), with
 * `threads` threads for about `seconds`, and stores multiply-adds per second in `*out`. Twelve independent
 * chains; no memory traffic.
 */
ck_status ck_fma_peak(int threads, double seconds, double *out);

#ifdef __cplusplus
}
#endif

#include "ckernels_train.h"
#include "ckernels_engine.h"

#endif /* CKERNELS_H */
