/* internal.h — declarations shared by the kernel files; not part of the public API. */
#ifndef CKERNELS_INTERNAL_H
#define CKERNELS_INTERNAL_H

/* POSIX (clock_gettime, setenv) on top of strict C11; every kernel file includes this header first. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "ckernels.h"

#include <stdbool.h>
#include <stdint.h>

/* The few OpenMP runtime entry points the kernels call, declared here so the build needs no omp.h
 * (Debian installs it under a versioned LLVM directory that other compilers do not search). */
int omp_get_thread_num(void);
int omp_get_num_threads(void);
int omp_get_max_threads(void);
int omp_in_parallel(void);
int omp_get_num_procs(void);

/* Largest sizes accepted, so that index arithmetic in 64 bits can never overflow. */
#define CK_MAX_DIM (((int64_t)1 << 31) - 1)

/* Panel width of packed bgemm weights: the columns of B one micro-kernel call covers. */
#define CK_NR 16

/* How a row of A is laid out in memory: `count` runs of `words` words, run r starting `stride` words after
 * run r − 1 (a convolution reads a patch as kernel_h runs straight from the input). One run for a GEMM. */
typedef struct ck_row_segments {
    int64_t count, words, stride;
} ck_row_segments;

/* Popcount micro-kernel: popcounts of a tile of `mr ≤ CK_MR_MAX` rows of A against one CK_NR-column panel
 * of B, for all CK_NR columns (zero-padded ones included). Row i is read as the runs `seg` describes starting
 * at a[i]; `b` is the panel, one CK_NR-word group per word of the row. Result x[i][j] goes to out[i·ldo + j]:
 *   x = popcount, plus out's previous value if `flags & CK_TILE_ACCUMULATE`,
 *   then replaced by k − 2·x if `flags & CK_TILE_FINAL` (the ±1 dot product). */
#define CK_MR_MAX 8
#ifndef CK_AVX512_MR
#define CK_AVX512_MR 4 /* rows per AVX-512 micro-tile: 4 × 2 accumulators (measured best of 4, 6, 8 here) */
#endif
enum { CK_TILE_ACCUMULATE = 1, CK_TILE_FINAL = 2 };
typedef void (*ck_popcount_tile_fn)(int mr, const ck_row_segments *seg, const uint64_t *const *a, const uint64_t *b,
                                    int32_t *out, int64_t ldo, int flags, int32_t k);

void ck_popcount_tile_scalar(int mr, const ck_row_segments *seg, const uint64_t *const *a, const uint64_t *b,
                              int32_t *out, int64_t ldo, int flags, int32_t k);
void ck_popcount_tile_avx2(int mr, const ck_row_segments *seg, const uint64_t *const *a, const uint64_t *b,
                              int32_t *out, int64_t ldo, int flags, int32_t k);
void ck_popcount_tile_avx512(int mr, const ck_row_segments *seg, const uint64_t *const *a, const uint64_t *b,
                              int32_t *out, int64_t ldo, int flags, int32_t k);

/* Peak loops: `iterations` steps of 12 independent XOR + popcount + add on registers; return a checksum
 * so the work cannot be removed. Binary MACs per step: 12 × (bits per vector). */
uint64_t ck_popcount_peak_scalar(uint64_t iterations);
uint64_t ck_popcount_peak_avx2(uint64_t iterations);
uint64_t ck_popcount_peak_avx512(uint64_t iterations);

/* Kernel table of the active path. */
typedef struct ck_kernels {
    ck_isa isa;
    int mr; /* rows per micro-tile */
    ck_popcount_tile_fn popcount_tile;
    uint64_t (*popcount_peak)(uint64_t iterations);
    int peak_bits_per_step; /* binary MACs per peak step */
} ck_kernels;

const ck_kernels *ck_active_kernels(void);

/* Packed bgemm weights. */
struct ck_bgemm_weights {
    int64_t n, k, kw; /* rows, bits, words per row */
    int64_t panels;   /* ceil(n / CK_NR) */
    uint64_t *data;   /* panels × kw × CK_NR words, 64-byte aligned */
};

/* Fills `w` (already zeroed) from `n` rows returned by `row(ctx, j)`; used by bgemm and bconv. */
ck_status ck_bgemm_weights_init(ck_bgemm_weights *w, int64_t n, int64_t k,
                                const uint64_t *(*row)(const void *ctx, int64_t j), const void *ctx);
void ck_bgemm_weights_free(ck_bgemm_weights *w);

/* Dot products k − 2·popcount of rows[0..m) against columns [n0, n0+nc) of packed weights (n0 a multiple
 * of CK_NR), written to dot[i·ldd + (j − n0)]. Single-threaded; the caller parallelises. */
void ck_bgemm_dot_block(const ck_kernels *kern, const uint64_t *const *rows, int64_t m, const ck_bgemm_weights *w,
                        int64_t n0, int64_t nc, int32_t k, int32_t *dot, int64_t ldd, const ck_row_segments *seg);

/* Binary convolution in parts, for callers that plan memory once (the packed-network executor):
 * argument checks, workspace size for `threads` threads, and the run itself (no allocation; `threads` = 1
 * runs inline, without an OpenMP region). `prescale` (per output channel, NULL for none) multiplies the
 * integer before CK_RELU_BEFORE: y = max(acc·prescale, 0)·scale + bias. */
ck_status ck_bconv2d_check(const uint64_t *input, const ck_conv_shape *s, const ck_bconv_weights *w,
                           const ck_output_transform *t);
size_t ck_bconv2d_workspace_bytes(const ck_conv_shape *s, const ck_bconv_weights *w, int threads);
/* What a caller that runs the same convolution many times can prepare once; NULL fields are none or made per call. */
typedef struct ck_bconv_prepared {
    const int32_t *sign_rule; /* ck_bconv_sign_rule's comparisons, used where only sign bits are written */
    const void *border;       /* ck_bconv_border_fill's table for this geometry */
} ck_bconv_prepared;

/* ck_bconv2d on one image with the tables prepared once per program and the caller's workspace. */
ck_status ck_bconv2d_run(const uint64_t *input, const ck_conv_shape *s, const ck_bconv_weights *w,
                         const ck_output_transform *t, const float *prescale, const ck_bconv_prepared *prepared,
                         int threads, void *workspace);

/* Border corrections by class of output row and column for the fused AVX-512 path (see bconv.c): bytes for the
 * geometry `s` (its batch does not matter), and the table itself, filled from the weights' tap sums. */
size_t ck_bconv_border_bytes(const ck_conv_shape *s, const ck_bconv_weights *w);
void ck_bconv_border_fill(const ck_conv_shape *s, const ck_bconv_weights *w, void *table);

/* ck_bmaxpool2d's work with `threads` threads (1: inline, no OpenMP region); arguments already checked. */
void ck_bmaxpool2d_run(const uint64_t *input, const ck_conv_shape *s, uint64_t *out, int threads);
/* The sign bits of a transform as integer comparisons, for a convolution that writes only sign bits (no floats,
 * integers or residual): bit o of a pixel is ((acc XOR flip[o]) < threshold[o]), with `rule` = flip[0..O) then
 * threshold[0..O) (flip 0 or −1). Found by evaluating the transform, in its order of operations, at every integer
 * acc a convolution with `w` can produce (|acc| ≤ kh·kw·C), so the bits are those of the float transform: CK_OK if
 * every channel's sign changes at most once over that range, else CK_ERR_UNSUPPORTED (the float transform must
 * run). ck_bconv2d_run uses it only where it writes only bits. */
ck_status ck_bconv_sign_rule(const ck_bconv_weights *w, const ck_output_transform *t, const float *prescale,
                             int32_t *rule);

/* ck_conv2d_forward_f32 for one image at a time, in parts, for the packed-network executor (train_conv_direct.c):
 * a plan made once per geometry (batch ignored) with the weights packed, the image copied into a zero-bordered
 * buffer (`border_floats`, border written too), then any split of the output rows among threads, each with
 * `scratch_floats` of its own. The floats are those of ck_conv2d_forward_f32 (accumulate = 0), on every path. */
typedef struct ck_conv_rows ck_conv_rows;
/* The plan of one geometry with its weights packed (see above). */
ck_status ck_conv_rows_create(const ck_conv_shape *s, const float *weight_rows, int64_t out_channels,
                              ck_conv_rows **out);
void ck_conv_rows_destroy(ck_conv_rows *p);
void ck_conv_rows_sizes(const ck_conv_rows *p, int64_t *border_floats, int64_t *scratch_floats);
void ck_conv_rows_border(const ck_conv_rows *p, const float *image, float *border);
/* 1 if the bordered buffer would be the image itself (no padding, every pixel read in place: a 1×1 convolution
 * without padding): then ck_conv_rows_compute may read the image directly and ck_conv_rows_border is not needed. */
int ck_conv_rows_reads_image(const ck_conv_rows *p);
/* Output rows [row0, row1) into `out`, the first pixel of row0 (rows of OW·out_channels floats follow). */
void ck_conv_rows_compute(const ck_conv_rows *p, const float *border, int64_t row0, int64_t row1, float *out,
                          float *scratch);

/* Aligned allocation helpers (64-byte alignment, zeroed). */
void *ck_alloc(size_t bytes);
void ck_free(void *p);

/* An estimator's constants, derived once from its parameters (estimators.c). */
typedef struct est_params {
    ck_estimator_kind kind;
    float threshold, delta; /* ReSTE; threshold is also the clip of the clipped STE */
    float inv_o, power;     /* ReSTE: 1/o and (1 − o)/o */
    float flat;             /* ReSTE: δ^(1/o)/δ */
    float t, kt;            /* EDE: t and k·t */
} est_params;

/* Checks e's parameters as its ck_*_backward_f32 does and derives them. */
ck_status est_params_make(const ck_estimator *e, est_params *p);

/* dx[i] (= or +=) grad[i]·r'(x[i]) on the calling thread (dx may be grad), for the active path, over `spans`
 * runs of `span` elements, run s from i = first + s·step. Each element's value depends on its x and grad only,
 * so a caller may cover a tensor in any pieces. */
typedef void (*est_runs_fn)(const est_params *p, const float *x, const float *grad, int accumulate, float *dx,
                            int64_t first, int64_t spans, int64_t span, int64_t step);
est_runs_fn est_runs_for_active_isa(void);

/* Argument checks. */
static inline bool ck_size_ok(int64_t v) { return v >= 1 && v <= CK_MAX_DIM; }

#endif
