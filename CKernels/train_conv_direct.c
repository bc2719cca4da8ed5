/* train_conv_direct.c — float convolution of NHWC tensors without im2col, for training: the forward, the input
 * gradient (a transposed convolution) and the weight gradient.
 *
 * Why: after im2col the 3×3 layers of small CIFAR networks (16–64 channels) are thin GEMMs (16–64 columns, depth
 * 144–576) that a BLAS runs at a fraction of the FPU's speed, and their column matrices, 9× the activations, go
 * through memory (im2col before the GEMM, col2im after it). Here the products are taken from the activations
 * themselves, with register tiles shaped for these layers:
 *
 *  - Forward and input gradient are one "gather" loop: each destination pixel sums, over the kernel taps that
 *    reach it, a source pixel times a (source channels × destination channels) slice of the weight. A tile holds
 *    P destination pixels of one row × V vectors of destination channels; per source channel it loads V weight
 *    vectors and broadcasts P source values. The input gradient of a stride-s convolution splits the destination
 *    into s² phases (pixels with the same row and column remainder mod s); each phase is an ordinary gather with
 *    the taps that reach it, so no product with an inserted zero is computed. For a binary convolution the
 *    sign estimator can be applied to each destination row as it is written (ck_conv2d_backward_sign_input_f32),
 *    which saves the separate pass that read the whole gradient and the input back from memory.
 *  - Weight gradient: per tap, dW[o][tap][c] = Σ over output pixels dY[o]·X[c] at the pixel the tap reads. A tile
 *    holds B output channels × V vectors of input channels, summed over a block of output rows that stays in L1;
 *    with few input channels (a stem), vectors of output channels × J inputs of a kernel row instead.
 *
 * Each thread copies its current image into a zero-bordered buffer first (channels rounded up to whole vectors
 * for the weight gradient), so no tile tests for borders: a product with the border adds exactly zero.
 *
 * Determinism: every gather output is computed by one thread in a fixed order (taps, then channels), whatever
 * the thread count. The weight gradient sums each thread's images (a static split of the batch) into its own
 * partial, pixels in raster order, then adds the partials in thread order: reproducible for a given thread
 * count, while different thread counts may round differently. The three paths add each output's products in
 * the same order with fused multiply-adds (the portable loops through fmaf), so they give identical bits: a
 * path forced for a test elsewhere in the process cannot change a training run.
 */
#include "internal.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define ALWAYS_INLINE inline __attribute__((always_inline))

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Floats per vector on a path; the scalar loops work channel by channel. */
static int64_t vector_lanes(ck_isa isa) { return isa == CK_ISA_AVX512 ? 16 : isa == CK_ISA_AVX2 ? 8 : 1; }

/* Copies one h × w × c image into a zero-bordered buffer (`bw` columns of `bc` ≥ c channels) with its top-left
 * pixel at (top, left); with `sign`, as sign(x): −1 where x < 0, else +1 (0, −0 and NaN give +1, as the bit
 * packing). Only the image's own pixels and channels are written: the border and the channels past c stay zero
 * from the buffer's allocation, whichever image was copied before. Compiled for each vector width (copies and
 * signs are exact, so the choice cannot change a result). */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
copy_bordered(const float *src, int64_t h, int64_t w, int64_t c, int sign, float *buf, int64_t bw, int64_t bc,
              int64_t top, int64_t left) {
    for (int64_t y = 0; y < h; y++) {
        const float *s = src + y * w * c;
        float *d = buf + ((y + top) * bw + left) * bc;
        if (!sign && bc == c) {
            memcpy(d, s, (size_t)(w * c) * sizeof(float));
        } else if (!sign) {
            for (int64_t x = 0; x < w; x++) memcpy(d + x * bc, s + x * c, (size_t)c * sizeof(float));
        } else {
            for (int64_t x = 0; x < w; x++)
                for (int64_t k = 0; k < c; k++) d[x * bc + k] = s[x * c + k] < 0.0f ? -1.0f : 1.0f;
        }
    }
}

/* The next image's source is prefetched into L2 a slice at a time while the current one is computed: its
 * bordered copy then reads from cache instead of waiting on memory, which the copy, a separate phase, cannot
 * overlap with arithmetic (it took 15 % of a layer's time). A few lines per step: a burst of dozens stalls
 * on the outstanding-miss buffers. */
typedef struct prefetch_stream {
    const char *next; /* NULL: nothing to prefetch */
    int64_t lines, per_step, done;
} prefetch_stream;

/* `floats` floats at `next` (may be NULL), spread over `steps` calls of prefetch_step. */
static prefetch_stream prefetch_plan(const float *next, int64_t floats, int64_t steps) {
    const int64_t lines = next != NULL ? ceil_div(floats * (int64_t)sizeof(float), 64) : 0;
    return (prefetch_stream){(const char *)next, lines, ceil_div(lines, max64(steps, 1)), 0};
}

static inline void prefetch_step(prefetch_stream *p) {
    const int64_t end = min64(p->lines, p->done + p->per_step);
    for (; p->done < end; p->done++) __builtin_prefetch(p->next + p->done * 64, 0, 2);
}

/* ---------------------------------------------------------------------------------------------- */
/* Gather: forward and input gradient                                                               */

/* Destination pixels (a·dst_step_y + ry, b·dst_step_x + rx) for a < rows, b < cols, reached by `taps` kernel
 * taps starting at index `first` of the plan's tap arrays. */
typedef struct gather_phase {
    int64_t ry, rx, rows, cols, taps, first;
} gather_phase;

typedef struct gather_plan {
    int64_t batch;
    int64_t sh, sw, sc; /* source image (input of the forward, output gradient of the backward) */
    int64_t dh, dw, dc; /* destination image */
    int64_t dcp;        /* dc rounded up to whole vectors: the row length of the packed weight */
    /* Destination pixel (a, b) of a phase reads source pixel (a·src_step_y + tap_y, b·src_step_x + tap_x). */
    int64_t src_step_y, src_step_x, dst_step_y, dst_step_x;
    int64_t top, left, bh, bw; /* bordered source: image at (top, left) in a bh × bw buffer */
    int64_t phase_count;
    gather_phase *phases;
    int64_t *tap_y, *tap_x, *tap_kernel; /* per tap: source offsets and index kh·kernel_w + kw */
    int64_t max_taps;                    /* largest tap count of a phase */
    float *weights;                      /* [kernel taps][sc][dcp], zero past dc */
} gather_plan;

static void gather_plan_free(gather_plan *g) {
    free(g->phases);
    free(g->tap_y);
    free(g->tap_x);
    free(g->tap_kernel);
    ck_free(g->weights);
}

/* Packs the OHWI weight rows `[out][taps·C]` as [tap][source channel][destination channel]: the forward reads
 * source = input channel c, destination = output channel o; the input gradient the other way round. */
static ck_status gather_pack_weights(gather_plan *g, const float *rows, int64_t taps, int64_t channels,
                                     int64_t out_channels, int forward) {
    g->weights = ck_alloc((size_t)(taps * g->sc * g->dcp) * sizeof(float));
    if (g->weights == NULL) return CK_ERR_OUT_OF_MEMORY;
    const int64_t depth = taps * channels;
    for (int64_t t = 0; t < taps; t++)
        for (int64_t o = 0; o < out_channels; o++)
            for (int64_t c = 0; c < channels; c++) {
                const float v = rows[o * depth + t * channels + c];
                if (forward) g->weights[(t * g->sc + c) * g->dcp + o] = v;
                else g->weights[(t * g->sc + o) * g->dcp + c] = v;
            }
    return CK_OK;
}

/* Border of the source buffer: enough rows and columns around the image for every tap of every phase. */
static void gather_plan_border(gather_plan *g) {
    int64_t min_y = 0, min_x = 0, max_y = g->sh - 1, max_x = g->sw - 1;
    for (int64_t k = 0; k < g->phase_count; k++) {
        const gather_phase *ph = &g->phases[k];
        for (int64_t t = ph->first; t < ph->first + ph->taps; t++) {
            min_y = min64(min_y, g->tap_y[t]);
            min_x = min64(min_x, g->tap_x[t]);
            max_y = max64(max_y, (ph->rows - 1) * g->src_step_y + g->tap_y[t]);
            max_x = max64(max_x, (ph->cols - 1) * g->src_step_x + g->tap_x[t]);
        }
    }
    g->top = -min_y;
    g->left = -min_x;
    g->bh = max_y + 1 + g->top;
    g->bw = max_x + 1 + g->left;
}

static ck_status gather_plan_alloc(gather_plan *g, int64_t phases, int64_t taps) {
    g->phase_count = phases;
    g->phases = calloc((size_t)phases, sizeof(gather_phase));
    g->tap_y = malloc((size_t)taps * sizeof(int64_t));
    g->tap_x = malloc((size_t)taps * sizeof(int64_t));
    g->tap_kernel = malloc((size_t)taps * sizeof(int64_t));
    return g->phases == NULL || g->tap_y == NULL || g->tap_x == NULL || g->tap_kernel == NULL
               ? CK_ERR_OUT_OF_MEMORY
               : CK_OK;
}

/* Forward: one phase, every tap; output (oy, ox) reads input (oy·stride + kh − pad, ox·stride + kw − pad). */
static ck_status gather_plan_forward(gather_plan *g, const ck_conv_shape *s, int64_t oh, int64_t ow,
                                     int64_t out_channels, const float *rows, int64_t lanes) {
    const int64_t taps = s->kernel_h * s->kernel_w;
    *g = (gather_plan){.batch = s->batch, .sh = s->height, .sw = s->width, .sc = s->channels, .dh = oh, .dw = ow,
                       .dc = out_channels, .dcp = ceil_div(out_channels, lanes) * lanes,
                       .src_step_y = s->stride_h, .src_step_x = s->stride_w, .dst_step_y = 1, .dst_step_x = 1,
                       .max_taps = taps};
    ck_status status = gather_plan_alloc(g, 1, taps);
    if (status != CK_OK) return status;
    g->phases[0] = (gather_phase){.ry = 0, .rx = 0, .rows = oh, .cols = ow, .taps = taps, .first = 0};
    for (int64_t kh = 0; kh < s->kernel_h; kh++)
        for (int64_t kw = 0; kw < s->kernel_w; kw++) {
            const int64_t t = kh * s->kernel_w + kw;
            g->tap_y[t] = kh - s->pad_h;
            g->tap_x[t] = kw - s->pad_w;
            g->tap_kernel[t] = t;
        }
    gather_plan_border(g);
    return gather_pack_weights(g, rows, taps, s->channels, out_channels, 1);
}

/* Input gradient: input pixel (iy, ix) receives dY(oy, ox)·W(kh, kw) where oy·stride = iy + pad − kh. With
 * iy = a·stride + ry, the taps with kh ≡ ry + pad (mod stride) reach it from oy = a + (ry + pad − kh)/stride;
 * likewise for columns. Phases that no tap reaches (a stride larger than the kernel) get zeros. */
static ck_status gather_plan_backward_input(gather_plan *g, const ck_conv_shape *s, int64_t oh, int64_t ow,
                                            int64_t out_channels, const float *rows, int64_t lanes) {
    const int64_t taps = s->kernel_h * s->kernel_w;
    const int64_t py = min64(s->stride_h, s->height), px = min64(s->stride_w, s->width);
    *g = (gather_plan){.batch = s->batch, .sh = oh, .sw = ow, .sc = out_channels, .dh = s->height, .dw = s->width,
                       .dc = s->channels, .dcp = ceil_div(s->channels, lanes) * lanes, .src_step_y = 1,
                       .src_step_x = 1, .dst_step_y = s->stride_h, .dst_step_x = s->stride_w};
    ck_status status = gather_plan_alloc(g, py * px, taps);
    if (status != CK_OK) return status;
    int64_t next = 0;
    for (int64_t ry = 0; ry < py; ry++)
        for (int64_t rx = 0; rx < px; rx++) {
            gather_phase *ph = &g->phases[ry * px + rx];
            *ph = (gather_phase){.ry = ry, .rx = rx, .rows = ceil_div(s->height - ry, s->stride_h),
                                 .cols = ceil_div(s->width - rx, s->stride_w), .first = next};
            for (int64_t kh = 0; kh < s->kernel_h; kh++) {
                const int64_t dy = ry + s->pad_h - kh;
                if (dy % s->stride_h != 0) continue;
                for (int64_t kw = 0; kw < s->kernel_w; kw++) {
                    const int64_t dx = rx + s->pad_w - kw;
                    if (dx % s->stride_w != 0) continue;
                    g->tap_y[next] = dy / s->stride_h;
                    g->tap_x[next] = dx / s->stride_w;
                    g->tap_kernel[next] = kh * s->kernel_w + kw;
                    next++;
                }
            }
            ph->taps = next - ph->first;
            g->max_taps = max64(g->max_taps, ph->taps);
        }
    gather_plan_border(g);
    return gather_pack_weights(g, rows, taps, s->channels, out_channels, 0);
}

/* One destination row of a phase: `cols` pixels `dst_px` floats apart; tap t reads the source at src + off[t]
 * (plus `src_px` floats per pixel) with weight slice w[t] `[sc][dcp]`. */
typedef struct gather_row {
    const float *src;
    const int64_t *off;
    const float *const *w;
    int64_t taps, cols, sc, dcp, dc, src_px, dst_px;
    float *dst;
    int accumulate;
} gather_row;

typedef void (*gather_row_fn)(const gather_row *r);

/* Portable path: one destination pixel at a time, destination channels innermost. `acc` holds dcp floats. */
static void gather_row_scalar(const gather_row *r, float *acc) {
    for (int64_t b = 0; b < r->cols; b++) {
        for (int64_t f = 0; f < r->dcp; f++) acc[f] = 0.0f;
        for (int64_t t = 0; t < r->taps; t++) {
            const float *x = r->src + r->off[t] + b * r->src_px;
            const float *w = r->w[t];
            for (int64_t c = 0; c < r->sc; c++) {
                const float xv = x[c];
                for (int64_t f = 0; f < r->dcp; f++) acc[f] = fmaf(xv, w[c * r->dcp + f], acc[f]);
            }
        }
        float *d = r->dst + b * r->dst_px;
        if (r->accumulate) {
            for (int64_t f = 0; f < r->dc; f++) d[f] += acc[f];
        } else {
            memcpy(d, acc, (size_t)r->dc * sizeof(float));
        }
    }
}

/* Largest tile (pixels) for V vectors of destination channels: P·V accumulators stay within the register file
 * with room for the V weight vectors and a broadcast (32 registers on AVX-512, 16 on AVX2). */
static const int gather_pixels_avx512[5] = {0, 16, 12, 8, 6};
static const int gather_pixels_avx2[3] = {0, 12, 6};

/* Splits `cols` pixels into the fewest tiles of at most `most`, of nearly equal sizes; calls tile(b0, P). */
#define FOR_EACH_TILE(cols, most, TILE)                                                                        \
    do {                                                                                                       \
        const int64_t tiles_ = ceil_div((cols), (most));                                                       \
        for (int64_t i_ = 0; i_ < tiles_; i_++) {                                                              \
            const int64_t b0 = (cols) * i_ / tiles_, b1 = (cols) * (i_ + 1) / tiles_;                          \
            TILE(b0, (int)(b1 - b0));                                                                          \
        }                                                                                                      \
    } while (0)

/* Switch cases 1 ... n calling CALL(k) with k a constant, so each tile size is compiled with its registers. */
#define CASE_(k, CALL) \
    case k: CALL(k); break;
#define CASES_6(CALL) CASE_(1, CALL) CASE_(2, CALL) CASE_(3, CALL) CASE_(4, CALL) CASE_(5, CALL) CASE_(6, CALL)
#define CASES_8(CALL) CASES_6(CALL) CASE_(7, CALL) CASE_(8, CALL)
#define CASES_12(CALL) CASES_8(CALL) CASE_(9, CALL) CASE_(10, CALL) CASE_(11, CALL) CASE_(12, CALL)
#define CASES_16(CALL) CASES_12(CALL) CASE_(13, CALL) CASE_(14, CALL) CASE_(15, CALL) CASE_(16, CALL)

#if defined(__x86_64__)
/* P pixels × V vectors of 16 destination channels from channel f0 (`valid` of them real from f0 on). */
static ALWAYS_INLINE __attribute__((target("avx512f"))) void
gather_tile_avx512(const int P, const int V, const gather_row *r, int64_t b0, int64_t f0) {
    __m512 acc[16][4];
#pragma clang loop unroll(full)
    for (int p = 0; p < P; p++)
#pragma clang loop unroll(full)
        for (int v = 0; v < V; v++) acc[p][v] = _mm512_setzero_ps();
    const int64_t src_px = r->src_px, dcp = r->dcp;
    for (int64_t t = 0; t < r->taps; t++) {
        const float *x = r->src + r->off[t] + b0 * src_px;
        const float *w = r->w[t] + f0;
        for (int64_t c = 0; c < r->sc; c++) {
            __m512 wv[4];
#pragma clang loop unroll(full)
            for (int v = 0; v < V; v++) wv[v] = _mm512_load_ps(w + c * dcp + 16 * v);
#pragma clang loop unroll(full)
            for (int p = 0; p < P; p++) {
                const __m512 xv = _mm512_set1_ps(x[p * src_px + c]);
#pragma clang loop unroll(full)
                for (int v = 0; v < V; v++) acc[p][v] = _mm512_fmadd_ps(xv, wv[v], acc[p][v]);
            }
        }
    }
    const int64_t valid = r->dc - f0;
#pragma clang loop unroll(full)
    for (int v = 0; v < V; v++) {
        const int64_t left = valid - 16 * v;
        const __mmask16 mask = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
#pragma clang loop unroll(full)
        for (int p = 0; p < P; p++) {
            float *d = r->dst + (b0 + p) * r->dst_px + f0 + 16 * v;
            __m512 y = acc[p][v];
            if (r->accumulate) y = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, d), y);
            _mm512_mask_storeu_ps(d, mask, y);
        }
    }
}

#define GATHER512(V, CASES)                                                                                    \
    __attribute__((target("avx512f"))) static void gather_tile_v##V##_avx512(const gather_row *r, int64_t b0, \
                                                                             int P, int64_t f0) {             \
        switch (P) {                                                                                           \
            CASES(GATHER512_##V)                                                                               \
        }                                                                                                      \
    }
#define GATHER512_1(P) gather_tile_avx512(P, 1, r, b0, f0)
#define GATHER512_2(P) gather_tile_avx512(P, 2, r, b0, f0)
#define GATHER512_3(P) gather_tile_avx512(P, 3, r, b0, f0)
#define GATHER512_4(P) gather_tile_avx512(P, 4, r, b0, f0)
GATHER512(1, CASES_16)
GATHER512(2, CASES_12)
GATHER512(3, CASES_8)
GATHER512(4, CASES_6)

__attribute__((target("avx512f"))) static void gather_row_avx512(const gather_row *r) {
    const int64_t vectors = r->dcp / 16, chunks = ceil_div(vectors, 4);
    for (int64_t k = 0; k < chunks; k++) {
        const int64_t v0 = vectors * k / chunks, v = vectors * (k + 1) / chunks - v0, f0 = 16 * v0;
#define TILE(b0, P)                                                                                            \
    switch (v) {                                                                                               \
    case 1: gather_tile_v1_avx512(r, b0, P, f0); break;                                                        \
    case 2: gather_tile_v2_avx512(r, b0, P, f0); break;                                                        \
    case 3: gather_tile_v3_avx512(r, b0, P, f0); break;                                                        \
    default: gather_tile_v4_avx512(r, b0, P, f0); break;                                                       \
    }
        FOR_EACH_TILE(r->cols, gather_pixels_avx512[v], TILE);
#undef TILE
    }
}

/* AVX2: P pixels × V vectors of 8 destination channels. A partial last vector goes through a buffer (AVX2 has
 * no masked float store of arbitrary lanes that is as simple). */
static ALWAYS_INLINE __attribute__((target("avx2,fma"))) void
gather_tile_avx2(const int P, const int V, const gather_row *r, int64_t b0, int64_t f0) {
    __m256 acc[12][2];
#pragma clang loop unroll(full)
    for (int p = 0; p < P; p++)
#pragma clang loop unroll(full)
        for (int v = 0; v < V; v++) acc[p][v] = _mm256_setzero_ps();
    const int64_t src_px = r->src_px, dcp = r->dcp;
    for (int64_t t = 0; t < r->taps; t++) {
        const float *x = r->src + r->off[t] + b0 * src_px;
        const float *w = r->w[t] + f0;
        for (int64_t c = 0; c < r->sc; c++) {
            __m256 wv[2];
#pragma clang loop unroll(full)
            for (int v = 0; v < V; v++) wv[v] = _mm256_load_ps(w + c * dcp + 8 * v);
#pragma clang loop unroll(full)
            for (int p = 0; p < P; p++) {
                const __m256 xv = _mm256_set1_ps(x[p * src_px + c]);
#pragma clang loop unroll(full)
                for (int v = 0; v < V; v++) acc[p][v] = _mm256_fmadd_ps(xv, wv[v], acc[p][v]);
            }
        }
    }
    const int64_t valid = r->dc - f0;
#pragma clang loop unroll(full)
    for (int v = 0; v < V; v++) {
        const int64_t left = valid - 8 * v;
        if (left <= 0) continue;
#pragma clang loop unroll(full)
        for (int p = 0; p < P; p++) {
            float *d = r->dst + (b0 + p) * r->dst_px + f0 + 8 * v;
            if (left >= 8) {
                __m256 y = acc[p][v];
                if (r->accumulate) y = _mm256_add_ps(_mm256_loadu_ps(d), y);
                _mm256_storeu_ps(d, y);
            } else {
                float lanes[8];
                _mm256_storeu_ps(lanes, acc[p][v]);
                for (int64_t j = 0; j < left; j++) d[j] = r->accumulate ? d[j] + lanes[j] : lanes[j];
            }
        }
    }
}

#define GATHER256(V, CASES)                                                                                    \
    __attribute__((target("avx2,fma"))) static void gather_tile_v##V##_avx2(const gather_row *r, int64_t b0,  \
                                                                            int P, int64_t f0) {              \
        switch (P) {                                                                                           \
            CASES(GATHER256_##V)                                                                               \
        }                                                                                                      \
    }
#define GATHER256_1(P) gather_tile_avx2(P, 1, r, b0, f0)
#define GATHER256_2(P) gather_tile_avx2(P, 2, r, b0, f0)
GATHER256(1, CASES_12)
GATHER256(2, CASES_6)

__attribute__((target("avx2,fma"))) static void gather_row_avx2(const gather_row *r) {
    /* Whole vectors over dc, not dcp: the packed engine's plans pad weight rows to 16 lanes for every path. */
    const int64_t vectors = ceil_div(r->dc, 8), chunks = ceil_div(vectors, 2);
    for (int64_t k = 0; k < chunks; k++) {
        const int64_t v0 = vectors * k / chunks, v = vectors * (k + 1) / chunks - v0, f0 = 8 * v0;
#define TILE(b0, P)                                                                                            \
    if (v == 1) gather_tile_v1_avx2(r, b0, P, f0);                                                             \
    else gather_tile_v2_avx2(r, b0, P, f0);
        FOR_EACH_TILE(r->cols, gather_pixels_avx2[v], TILE);
#undef TILE
    }
}
#endif

/* The taps of a phase: where each reads the bordered source and its weight slice. */
static void gather_phase_taps(const gather_plan *g, const gather_phase *ph, int64_t *off, const float **w) {
    for (int64_t t = 0; t < ph->taps; t++) {
        const int64_t i = ph->first + t;
        off[t] = ((g->tap_y[i] + g->top) * g->bw + g->tap_x[i] + g->left) * g->sc;
        w[t] = g->weights + g->tap_kernel[i] * g->sc * g->dcp;
    }
}

/* An estimator applied to the input gradient as it is written (ck_conv2d_backward_sign_input_f32): a row is
 * computed into `raw`, laid out as a destination row, and the estimator carries it to the destination from
 * there while it is still in L1, instead of a second pass over the whole gradient. */
typedef struct gather_estimate {
    const est_params *params;
    est_runs_fn runs;
    const float *x; /* the layer's input image, laid out as the destination image */
    float *dst;     /* the destination image */
    float *raw;     /* the thread's row of dw·dc floats */
    /* The next image's input, a slice per row: read cold, a row of it stalled the row's estimator long enough
     * to cost more than the separate pass saved (STE ran 20 % slower than kernel + pass on 32×32×16). */
    prefetch_stream next_x;
} gather_estimate;

/* dst (= or +=) r'(x)·raw for `cols` pixels `px` floats apart, `d` being one of est->dst's rows. */
static void estimate_row(gather_estimate *est, int64_t cols, int64_t dc, int64_t px, float *d, int accumulate) {
    prefetch_step(&est->next_x);
    const float *x = est->x + (d - est->dst);
    if (px == dc) est->runs(est->params, x, est->raw, accumulate, d, 0, 1, cols * dc, 0);
    else est->runs(est->params, x, est->raw, accumulate, d, 0, cols, dc, px);
}

/* Rows [a0, a1) of a phase with taps (off, w); `dst` is the destination of row a0's first pixel. */
static void gather_phase_rows(const gather_plan *g, ck_isa isa, const gather_phase *ph, const int64_t *off,
                              const float *const *w, const float *buf, float *dst, int accumulate, int64_t a0,
                              int64_t a1, float *acc, prefetch_stream *prefetch, gather_estimate *est) {
    gather_row row = {.off = off, .w = w, .taps = ph->taps, .cols = ph->cols, .sc = g->sc, .dcp = g->dcp,
                      .dc = g->dc, .src_px = g->src_step_x * g->sc, .dst_px = g->dst_step_x * g->dc,
                      .accumulate = est != NULL ? 0 : accumulate};
    for (int64_t a = a0; a < a1; a++) {
        prefetch_step(prefetch);
        float *d = dst + (a - a0) * g->dst_step_y * g->dw * g->dc;
        row.src = buf + a * g->src_step_y * g->bw * g->sc;
        row.dst = est != NULL ? est->raw : d;
        switch (isa) {
#if defined(__x86_64__)
        case CK_ISA_AVX512: gather_row_avx512(&row); break;
        case CK_ISA_AVX2: gather_row_avx2(&row); break;
#endif
        default: gather_row_scalar(&row, acc); break;
        }
        if (est != NULL) estimate_row(est, ph->cols, g->dc, row.dst_px, d, accumulate);
    }
}

/* One image: every phase, every destination row. `buf` is the bordered source; `off`, `w` and `acc` are the
 * thread's scratch (max_taps offsets and weight pointers, dcp floats). */
static void gather_image(const gather_plan *g, ck_isa isa, const float *buf, float *dst, int accumulate,
                         int64_t *off, const float **w, float *acc, prefetch_stream *prefetch,
                         gather_estimate *est) {
    for (int64_t k = 0; k < g->phase_count; k++) {
        const gather_phase *ph = &g->phases[k];
        if (ph->taps == 0) {
            /* No tap reaches these pixels: their gradient is zero, which an estimator still carries (adding
             * r'(x)·0 = +0 turns a −0 into +0, as the separate pass would). */
            if (est != NULL) memset(est->raw, 0, (size_t)(g->dw * g->dc) * sizeof(float));
            for (int64_t a = 0; a < ph->rows; a++) {
                float *d = dst + ((a * g->dst_step_y + ph->ry) * g->dw + ph->rx) * g->dc;
                if (est != NULL) estimate_row(est, ph->cols, g->dc, g->dst_step_x * g->dc, d, accumulate);
                else if (!accumulate)
                    for (int64_t b = 0; b < ph->cols; b++)
                        memset(d + b * g->dst_step_x * g->dc, 0, (size_t)g->dc * sizeof(float));
            }
            continue;
        }
        gather_phase_taps(g, ph, off, w);
        gather_phase_rows(g, isa, ph, off, w, buf, dst + (ph->ry * g->dw + ph->rx) * g->dc, accumulate, 0, ph->rows,
                          acc, prefetch, est);
    }
}

/* Runs a plan over the batch: images are handed out one at a time (an atomic counter balances the threads on
 * a shared machine; each output depends on its image only, so the split does not change any value). A thread
 * claims its next image before computing the current one, so that it can prefetch it. */
static ck_status gather_run(const gather_plan *g, const float *src, float *dst, int accumulate,
                            const est_params *estimator, const float *x) {
    const ck_isa isa = ck_isa_active();
    const int64_t src_image = g->sh * g->sw * g->sc, dst_image = g->dh * g->dw * g->dc;
    const size_t buffer_bytes = (size_t)(g->bh * g->bw * g->sc) * sizeof(float);
    const int threads = (int)min64(ck_get_num_threads(), g->batch);
    const est_runs_fn runs = estimator != NULL ? est_runs_for_active_isa() : NULL;
    _Atomic int64_t next = 0;
    _Atomic int failed = 0;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        float *buf = ck_alloc(buffer_bytes);
        int64_t *off = malloc((size_t)g->max_taps * sizeof(int64_t) + 1);
        const float **w = malloc((size_t)g->max_taps * sizeof(float *) + 1);
        float *acc = malloc((size_t)g->dcp * sizeof(float));
        gather_estimate est = {.params = estimator, .runs = runs};
        if (estimator != NULL) est.raw = ck_alloc((size_t)(g->dw * g->dc) * sizeof(float));
        if (buf == NULL || off == NULL || w == NULL || acc == NULL || (estimator != NULL && est.raw == NULL)) {
            atomic_store(&failed, 1);
        } else {
            int64_t rows = 0;
            for (int64_t k = 0; k < g->phase_count; k++) rows += g->phases[k].rows;
            for (int64_t n = atomic_fetch_add(&next, 1), after; n < g->batch; n = after) {
                after = atomic_fetch_add(&next, 1);
                prefetch_stream prefetch =
                    prefetch_plan(after < g->batch ? src + after * src_image : NULL, src_image, rows);
                copy_bordered(src + n * src_image, g->sh, g->sw, g->sc, 0, buf, g->bw, g->sc, g->top, g->left);
                if (estimator != NULL) {
                    est.x = x + n * dst_image;
                    est.dst = dst + n * dst_image;
                    est.next_x = prefetch_plan(after < g->batch ? x + after * dst_image : NULL, dst_image, rows);
                }
                gather_image(g, isa, buf, dst + n * dst_image, accumulate, off, w, acc, &prefetch,
                             estimator != NULL ? &est : NULL);
            }
        }
        ck_free(buf);
        ck_free(est.raw);
        free(off);
        free(w);
        free(acc);
    }
    return atomic_load(&failed) ? CK_ERR_OUT_OF_MEMORY : CK_OK;
}

ck_status ck_conv2d_forward_f32(const float *input, const ck_conv_shape *s, const float *weight_rows,
                                int64_t out_channels, int accumulate, float *out) {
    if (input == NULL || s == NULL || weight_rows == NULL || out == NULL) return CK_ERR_NULL_POINTER;
    int64_t oh, ow;
    ck_status status = ck_conv_output_size(s, &oh, &ow);
    if (status != CK_OK) return status;
    if (!ck_size_ok(out_channels)) return CK_ERR_INVALID_SIZE;
    gather_plan g;
    status = gather_plan_forward(&g, s, oh, ow, out_channels, weight_rows, vector_lanes(ck_isa_active()));
    if (status == CK_OK) status = gather_run(&g, input, out, accumulate, NULL, NULL);
    gather_plan_free(&g);
    return status;
}

ck_status ck_conv2d_backward_input_f32(const float *grad, const ck_conv_shape *s, const float *weight_rows,
                                       int64_t out_channels, int accumulate, float *input_grad) {
    if (grad == NULL || s == NULL || weight_rows == NULL || input_grad == NULL) return CK_ERR_NULL_POINTER;
    int64_t oh, ow;
    ck_status status = ck_conv_output_size(s, &oh, &ow);
    if (status != CK_OK) return status;
    if (!ck_size_ok(out_channels)) return CK_ERR_INVALID_SIZE;
    gather_plan g;
    status = gather_plan_backward_input(&g, s, oh, ow, out_channels, weight_rows, vector_lanes(ck_isa_active()));
    if (status == CK_OK) status = gather_run(&g, grad, input_grad, accumulate, NULL, NULL);
    gather_plan_free(&g);
    return status;
}

ck_status ck_conv2d_backward_sign_input_f32(const float *grad, const ck_conv_shape *s, const float *weight_rows,
                                            int64_t out_channels, const float *input, const ck_estimator *e,
                                            int accumulate, float *input_grad) {
    if (grad == NULL || s == NULL || weight_rows == NULL || input == NULL || e == NULL || input_grad == NULL)
        return CK_ERR_NULL_POINTER;
    est_params params;
    ck_status status = est_params_make(e, &params);
    if (status != CK_OK) return status;
    int64_t oh, ow;
    status = ck_conv_output_size(s, &oh, &ow);
    if (status != CK_OK) return status;
    if (!ck_size_ok(out_channels)) return CK_ERR_INVALID_SIZE;
    gather_plan g;
    status = gather_plan_backward_input(&g, s, oh, ow, out_channels, weight_rows, vector_lanes(ck_isa_active()));
    if (status == CK_OK) status = gather_run(&g, grad, input_grad, accumulate, &params, input);
    gather_plan_free(&g);
    return status;
}

/* The forward for one image at a time, row by row, for the packed-network executor: the same plan, tiles and
 * order of fused multiply-adds as ck_conv2d_forward_f32, so the engine's float convolution gives its floats. The
 * weights are packed for 16 lanes, which every path reads (AVX2 walks dc in 8-lane vectors, the portable loop
 * all dcp columns), so a path forced after the plan is made still finds its layout. */
struct ck_conv_rows {
    gather_plan g;
    int64_t *off;    /* the single phase's taps in the bordered copy */
    const float **w; /* and their weight slices */
};

ck_status ck_conv_rows_create(const ck_conv_shape *s, const float *weight_rows, int64_t out_channels,
                              ck_conv_rows **out) {
    if (out == NULL) return CK_ERR_NULL_POINTER;
    *out = NULL;
    if (s == NULL || weight_rows == NULL) return CK_ERR_NULL_POINTER;
    ck_conv_shape one = *s;
    one.batch = 1;
    int64_t oh, ow;
    ck_status status = ck_conv_output_size(&one, &oh, &ow);
    if (status != CK_OK) return status;
    if (!ck_size_ok(out_channels)) return CK_ERR_INVALID_SIZE;
    ck_conv_rows *p = calloc(1, sizeof *p);
    if (p == NULL) return CK_ERR_OUT_OF_MEMORY;
    status = gather_plan_forward(&p->g, &one, oh, ow, out_channels, weight_rows, 16);
    if (status == CK_OK) {
        p->off = malloc((size_t)p->g.max_taps * sizeof(int64_t));
        p->w = malloc((size_t)p->g.max_taps * sizeof(float *));
        if (p->off == NULL || p->w == NULL) status = CK_ERR_OUT_OF_MEMORY;
        else gather_phase_taps(&p->g, &p->g.phases[0], p->off, p->w);
    }
    if (status != CK_OK) {
        ck_conv_rows_destroy(p);
        return status;
    }
    *out = p;
    return CK_OK;
}

void ck_conv_rows_destroy(ck_conv_rows *p) {
    if (p == NULL) return;
    gather_plan_free(&p->g);
    free(p->off);
    free(p->w);
    free(p);
}

void ck_conv_rows_sizes(const ck_conv_rows *p, int64_t *border_floats, int64_t *scratch_floats) {
    if (border_floats != NULL) *border_floats = p->g.bh * p->g.bw * p->g.sc;
    if (scratch_floats != NULL) *scratch_floats = p->g.dcp;
}

int ck_conv_rows_reads_image(const ck_conv_rows *p) {
    const gather_plan *g = &p->g;
    return g->top == 0 && g->left == 0 && g->bh == g->sh && g->bw == g->sw;
}

/* Unlike copy_bordered, writes the border too: the engine's workspace is shared with other steps, so it cannot
 * rely on zeros left from the allocation. */
void ck_conv_rows_border(const ck_conv_rows *p, const float *image, float *border) {
    const gather_plan *g = &p->g;
    const int64_t c = g->sc, row = g->bw * c, right = g->bw - g->left - g->sw;
    for (int64_t y = 0; y < g->bh; y++) {
        float *d = border + y * row;
        const int64_t iy = y - g->top;
        if (iy < 0 || iy >= g->sh) {
            memset(d, 0, (size_t)row * sizeof(float));
            continue;
        }
        memset(d, 0, (size_t)(g->left * c) * sizeof(float));
        memcpy(d + g->left * c, image + iy * g->sw * c, (size_t)(g->sw * c) * sizeof(float));
        memset(d + (g->left + g->sw) * c, 0, (size_t)(right * c) * sizeof(float));
    }
}

void ck_conv_rows_compute(const ck_conv_rows *p, const float *border, int64_t row0, int64_t row1, float *out,
                          float *scratch) {
    prefetch_stream none = prefetch_plan(NULL, 0, 1);
    gather_phase_rows(&p->g, ck_isa_active(), &p->g.phases[0], p->off, p->w, border, out, 0, row0, row1, scratch,
                      &none, NULL);
}

/* ---------------------------------------------------------------------------------------------- */
/* Weight gradient                                                                                  */

/* The weight gradient of one convolution. Partials are [out][tap][cp] (cp = channels rounded up to whole
 * vectors), or [tap][c][op] with vectors along the output channels; the bordered input has the padding as
 * border, so output pixel (oy, ox) and tap (kh, kw) read buffer pixel (oy·stride_h + kh, ox·stride_w + kw). */
typedef struct wgrad_plan {
    const ck_conv_shape *s;
    int64_t oh, ow, o, taps, cp;
    int64_t bh, bw;       /* bordered input */
    int64_t block_rows;   /* output rows summed per pass over the taps (kept in L1) */
    int sign;             /* read sign(x) instead of x */
    int by_output;        /* vectors along the output channels (partials [tap][c][op]; cp = C) */
    int64_t op;           /* output channels rounded up to whole vectors (by_output) */
} wgrad_plan;

/* One tap over `rows` output rows from `g` (dY at the block's first pixel) and `x` (the bordered input at the
 * pixel the tap reads for that output pixel), into part (the partial at [0][tap][0]). */
typedef struct wgrad_block {
    const float *x, *g;
    float *part;
    int64_t rows, cols;
    int64_t x_row, x_px; /* floats between output rows and between output pixels in the bordered input */
    int64_t g_row, o, part_row, cp;
} wgrad_block;

static void wgrad_block_scalar(const wgrad_block *k) {
    for (int64_t r = 0; r < k->rows; r++)
        for (int64_t ox = 0; ox < k->cols; ox++) {
            const float *x = k->x + r * k->x_row + ox * k->x_px;
            const float *g = k->g + r * k->g_row + ox * k->o;
            for (int64_t f = 0; f < k->o; f++) {
                const float gv = g[f];
                float *part = k->part + f * k->part_row;
                for (int64_t c = 0; c < k->cp; c++) part[c] = fmaf(gv, x[c], part[c]);
            }
        }
}

/* Largest output-channel block for V vectors of input channels (accumulators B·V plus V input vectors and a
 * broadcast within the register file). */
static const int wgrad_channels_avx512[5] = {0, 16, 12, 8, 6};
static const int wgrad_channels_avx2[3] = {0, 12, 6};

/* Splits n into the fewest blocks of at most `most`, of nearly equal sizes; calls BLOCK(start, size). */
#define FOR_EACH_BLOCK(n, most, BLOCK)                                                                         \
    do {                                                                                                       \
        const int64_t blocks_ = ceil_div((n), (most));                                                         \
        for (int64_t i_ = 0; i_ < blocks_; i_++) {                                                             \
            const int64_t s0 = (n) * i_ / blocks_, s1 = (n) * (i_ + 1) / blocks_;                              \
            BLOCK(s0, (int)(s1 - s0));                                                                         \
        }                                                                                                      \
    } while (0)

#if defined(__x86_64__)
/* B output channels from f0 × V vectors of 16 input channels from c0. */
static ALWAYS_INLINE __attribute__((target("avx512f"))) void
wgrad_tile_avx512(const int B, const int V, const wgrad_block *k, int64_t f0, int64_t c0) {
    __m512 acc[16][4];
    float *part = k->part + f0 * k->part_row + c0;
#pragma clang loop unroll(full)
    for (int b = 0; b < B; b++)
#pragma clang loop unroll(full)
        for (int v = 0; v < V; v++) acc[b][v] = _mm512_loadu_ps(part + b * k->part_row + 16 * v);
    for (int64_t r = 0; r < k->rows; r++) {
        const float *x = k->x + r * k->x_row + c0;
        const float *g = k->g + r * k->g_row + f0;
        for (int64_t ox = 0; ox < k->cols; ox++) {
            __m512 xv[4];
#pragma clang loop unroll(full)
            for (int v = 0; v < V; v++) xv[v] = _mm512_loadu_ps(x + ox * k->x_px + 16 * v);
#pragma clang loop unroll(full)
            for (int b = 0; b < B; b++) {
                const __m512 gv = _mm512_set1_ps(g[ox * k->o + b]);
#pragma clang loop unroll(full)
                for (int v = 0; v < V; v++) acc[b][v] = _mm512_fmadd_ps(gv, xv[v], acc[b][v]);
            }
        }
    }
#pragma clang loop unroll(full)
    for (int b = 0; b < B; b++)
#pragma clang loop unroll(full)
        for (int v = 0; v < V; v++) _mm512_storeu_ps(part + b * k->part_row + 16 * v, acc[b][v]);
}

#define WGRAD512(V, CASES)                                                                                     \
    __attribute__((target("avx512f"))) static void wgrad_tile_v##V##_avx512(const wgrad_block *k, int64_t f0, \
                                                                            int B, int64_t c0) {              \
        switch (B) {                                                                                           \
            CASES(WGRAD512_##V)                                                                                \
        }                                                                                                      \
    }
#define WGRAD512_1(B) wgrad_tile_avx512(B, 1, k, f0, c0)
#define WGRAD512_2(B) wgrad_tile_avx512(B, 2, k, f0, c0)
#define WGRAD512_3(B) wgrad_tile_avx512(B, 3, k, f0, c0)
#define WGRAD512_4(B) wgrad_tile_avx512(B, 4, k, f0, c0)
WGRAD512(1, CASES_16)
WGRAD512(2, CASES_12)
WGRAD512(3, CASES_8)
WGRAD512(4, CASES_6)

__attribute__((target("avx512f"))) static void wgrad_block_avx512(const wgrad_block *k) {
    const int64_t vectors = k->cp / 16, chunks = ceil_div(vectors, 4);
    for (int64_t i = 0; i < chunks; i++) {
        const int64_t v0 = vectors * i / chunks, v = vectors * (i + 1) / chunks - v0, c0 = 16 * v0;
#define BLOCK(f0, B)                                                                                           \
    switch (v) {                                                                                               \
    case 1: wgrad_tile_v1_avx512(k, f0, B, c0); break;                                                         \
    case 2: wgrad_tile_v2_avx512(k, f0, B, c0); break;                                                         \
    case 3: wgrad_tile_v3_avx512(k, f0, B, c0); break;                                                         \
    default: wgrad_tile_v4_avx512(k, f0, B, c0); break;                                                        \
    }
        FOR_EACH_BLOCK(k->o, wgrad_channels_avx512[v], BLOCK);
#undef BLOCK
    }
}

static ALWAYS_INLINE __attribute__((target("avx2,fma"))) void
wgrad_tile_avx2(const int B, const int V, const wgrad_block *k, int64_t f0, int64_t c0) {
    __m256 acc[12][2];
    float *part = k->part + f0 * k->part_row + c0;
#pragma clang loop unroll(full)
    for (int b = 0; b < B; b++)
#pragma clang loop unroll(full)
        for (int v = 0; v < V; v++) acc[b][v] = _mm256_loadu_ps(part + b * k->part_row + 8 * v);
    for (int64_t r = 0; r < k->rows; r++) {
        const float *x = k->x + r * k->x_row + c0;
        const float *g = k->g + r * k->g_row + f0;
        for (int64_t ox = 0; ox < k->cols; ox++) {
            __m256 xv[2];
#pragma clang loop unroll(full)
            for (int v = 0; v < V; v++) xv[v] = _mm256_loadu_ps(x + ox * k->x_px + 8 * v);
#pragma clang loop unroll(full)
            for (int b = 0; b < B; b++) {
                const __m256 gv = _mm256_set1_ps(g[ox * k->o + b]);
#pragma clang loop unroll(full)
                for (int v = 0; v < V; v++) acc[b][v] = _mm256_fmadd_ps(gv, xv[v], acc[b][v]);
            }
        }
    }
#pragma clang loop unroll(full)
    for (int b = 0; b < B; b++)
#pragma clang loop unroll(full)
        for (int v = 0; v < V; v++) _mm256_storeu_ps(part + b * k->part_row + 8 * v, acc[b][v]);
}

#define WGRAD256(V, CASES)                                                                                     \
    __attribute__((target("avx2,fma"))) static void wgrad_tile_v##V##_avx2(const wgrad_block *k, int64_t f0,  \
                                                                           int B, int64_t c0) {               \
        switch (B) {                                                                                           \
            CASES(WGRAD256_##V)                                                                                \
        }                                                                                                      \
    }
#define WGRAD256_1(B) wgrad_tile_avx2(B, 1, k, f0, c0)
#define WGRAD256_2(B) wgrad_tile_avx2(B, 2, k, f0, c0)
WGRAD256(1, CASES_12)
WGRAD256(2, CASES_6)

__attribute__((target("avx2,fma"))) static void wgrad_block_avx2(const wgrad_block *k) {
    const int64_t vectors = k->cp / 8, chunks = ceil_div(vectors, 2);
    for (int64_t i = 0; i < chunks; i++) {
        const int64_t v0 = vectors * i / chunks, v = vectors * (i + 1) / chunks - v0, c0 = 8 * v0;
#define BLOCK(f0, B)                                                                                           \
    if (v == 1) wgrad_tile_v1_avx2(k, f0, B, c0);                                                              \
    else wgrad_tile_v2_avx2(k, f0, B, c0);
        FOR_EACH_BLOCK(k->o, wgrad_channels_avx2[v], BLOCK);
#undef BLOCK
    }
}
#endif

/* Few input channels (a stem's 3 colours) would leave most lanes of an input-channel vector empty; then the
 * vectors run along the output channels instead. A kernel row's taps read kernel_w·C consecutive floats of the
 * bordered input, so a tile takes J consecutive entries j = kw·C + c of that run × V vectors of output channels:
 * per output pixel, V gradient vectors and J broadcast inputs. Partials are [kh][kw·C + c][op]. */
typedef struct wgrad_out_block {
    const float *x, *g; /* bordered input at the run of the block's first output pixel; its output gradient */
    float *part;        /* partial at [kh][0][0] */
    int64_t rows, cols, run;
    int64_t x_row, x_px; /* floats between output rows and between output pixels in the bordered input */
    int64_t g_row, o, op;
} wgrad_out_block;

#define CASES_24(CALL)                                                                                         \
    CASES_16(CALL) CASE_(17, CALL) CASE_(18, CALL) CASE_(19, CALL) CASE_(20, CALL) CASE_(21, CALL)             \
        CASE_(22, CALL) CASE_(23, CALL) CASE_(24, CALL)

/* Largest run block for V vectors of output channels. */
static const int wgrad_out_run_avx512[5] = {0, 24, 12, 8, 6};
static const int wgrad_out_run_avx2[3] = {0, 12, 6};

#if defined(__x86_64__)
/* J run entries from j0 × V vectors of 16 output channels from o0 (`valid` output channels from o0 on: the
 * gradient is read with a mask, since the last pixel's last vector may end the tensor). */
static ALWAYS_INLINE __attribute__((target("avx512f"))) void
wgrad_out_tile_avx512(const int J, const int V, const wgrad_out_block *k, int64_t j0, int64_t o0) {
    __m512 acc[24][4];
    __mmask16 mask[4];
    float *part = k->part + j0 * k->op + o0;
#pragma clang loop unroll(full)
    for (int v = 0; v < V; v++) {
        const int64_t left = k->o - o0 - 16 * v;
        mask[v] = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
    }
#pragma clang loop unroll(full)
    for (int j = 0; j < J; j++)
#pragma clang loop unroll(full)
        for (int v = 0; v < V; v++) acc[j][v] = _mm512_loadu_ps(part + j * k->op + 16 * v);
    for (int64_t r = 0; r < k->rows; r++) {
        const float *x = k->x + r * k->x_row + j0;
        const float *g = k->g + r * k->g_row + o0;
        for (int64_t ox = 0; ox < k->cols; ox++) {
            __m512 gv[4];
#pragma clang loop unroll(full)
            for (int v = 0; v < V; v++) gv[v] = _mm512_maskz_loadu_ps(mask[v], g + ox * k->o + 16 * v);
#pragma clang loop unroll(full)
            for (int j = 0; j < J; j++) {
                const __m512 xv = _mm512_set1_ps(x[ox * k->x_px + j]);
#pragma clang loop unroll(full)
                for (int v = 0; v < V; v++) acc[j][v] = _mm512_fmadd_ps(xv, gv[v], acc[j][v]);
            }
        }
    }
#pragma clang loop unroll(full)
    for (int j = 0; j < J; j++)
#pragma clang loop unroll(full)
        for (int v = 0; v < V; v++) _mm512_storeu_ps(part + j * k->op + 16 * v, acc[j][v]);
}

#define WGRAD_OUT512(V, CASES)                                                                                 \
    __attribute__((target("avx512f"))) static void wgrad_out_tile_v##V##_avx512(                              \
        const wgrad_out_block *k, int64_t j0, int J, int64_t o0) {                                             \
        switch (J) {                                                                                           \
            CASES(WGRAD_OUT512_##V)                                                                            \
        }                                                                                                      \
    }
#define WGRAD_OUT512_1(J) wgrad_out_tile_avx512(J, 1, k, j0, o0)
#define WGRAD_OUT512_2(J) wgrad_out_tile_avx512(J, 2, k, j0, o0)
#define WGRAD_OUT512_3(J) wgrad_out_tile_avx512(J, 3, k, j0, o0)
#define WGRAD_OUT512_4(J) wgrad_out_tile_avx512(J, 4, k, j0, o0)
WGRAD_OUT512(1, CASES_24)
WGRAD_OUT512(2, CASES_12)
WGRAD_OUT512(3, CASES_8)
WGRAD_OUT512(4, CASES_6)

__attribute__((target("avx512f"))) static void wgrad_out_block_avx512(const wgrad_out_block *k) {
    const int64_t vectors = k->op / 16, chunks = ceil_div(vectors, 4);
    for (int64_t i = 0; i < chunks; i++) {
        const int64_t v0 = vectors * i / chunks, v = vectors * (i + 1) / chunks - v0, o0 = 16 * v0;
#define BLOCK(j0, J)                                                                                           \
    switch (v) {                                                                                               \
    case 1: wgrad_out_tile_v1_avx512(k, j0, J, o0); break;                                                     \
    case 2: wgrad_out_tile_v2_avx512(k, j0, J, o0); break;                                                     \
    case 3: wgrad_out_tile_v3_avx512(k, j0, J, o0); break;                                                     \
    default: wgrad_out_tile_v4_avx512(k, j0, J, o0); break;                                                    \
    }
        FOR_EACH_BLOCK(k->run, wgrad_out_run_avx512[v], BLOCK);
#undef BLOCK
    }
}

static ALWAYS_INLINE __attribute__((target("avx2,fma"))) void
wgrad_out_tile_avx2(const int J, const int V, const wgrad_out_block *k, int64_t j0, int64_t o0) {
    __m256 acc[12][2];
    __m256i mask[2];
    float *part = k->part + j0 * k->op + o0;
#pragma clang loop unroll(full)
    for (int v = 0; v < V; v++) {
        const int64_t left = k->o - o0 - 8 * v;
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        mask[v] = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(left >= 8 ? 8 : left)), lane);
    }
#pragma clang loop unroll(full)
    for (int j = 0; j < J; j++)
#pragma clang loop unroll(full)
        for (int v = 0; v < V; v++) acc[j][v] = _mm256_loadu_ps(part + j * k->op + 8 * v);
    for (int64_t r = 0; r < k->rows; r++) {
        const float *x = k->x + r * k->x_row + j0;
        const float *g = k->g + r * k->g_row + o0;
        for (int64_t ox = 0; ox < k->cols; ox++) {
            __m256 gv[2];
#pragma clang loop unroll(full)
            for (int v = 0; v < V; v++) gv[v] = _mm256_maskload_ps(g + ox * k->o + 8 * v, mask[v]);
#pragma clang loop unroll(full)
            for (int j = 0; j < J; j++) {
                const __m256 xv = _mm256_set1_ps(x[ox * k->x_px + j]);
#pragma clang loop unroll(full)
                for (int v = 0; v < V; v++) acc[j][v] = _mm256_fmadd_ps(xv, gv[v], acc[j][v]);
            }
        }
    }
#pragma clang loop unroll(full)
    for (int j = 0; j < J; j++)
#pragma clang loop unroll(full)
        for (int v = 0; v < V; v++) _mm256_storeu_ps(part + j * k->op + 8 * v, acc[j][v]);
}

#define WGRAD_OUT256(V, CASES)                                                                                 \
    __attribute__((target("avx2,fma"))) static void wgrad_out_tile_v##V##_avx2(const wgrad_out_block *k,      \
                                                                               int64_t j0, int J, int64_t o0) { \
        switch (J) {                                                                                           \
            CASES(WGRAD_OUT256_##V)                                                                            \
        }                                                                                                      \
    }
#define WGRAD_OUT256_1(J) wgrad_out_tile_avx2(J, 1, k, j0, o0)
#define WGRAD_OUT256_2(J) wgrad_out_tile_avx2(J, 2, k, j0, o0)
WGRAD_OUT256(1, CASES_12)
WGRAD_OUT256(2, CASES_6)

__attribute__((target("avx2,fma"))) static void wgrad_out_block_avx2(const wgrad_out_block *k) {
    const int64_t vectors = k->op / 8, chunks = ceil_div(vectors, 2);
    for (int64_t i = 0; i < chunks; i++) {
        const int64_t v0 = vectors * i / chunks, v = vectors * (i + 1) / chunks - v0, o0 = 8 * v0;
#define BLOCK(j0, J)                                                                                           \
    if (v == 1) wgrad_out_tile_v1_avx2(k, j0, J, o0);                                                          \
    else wgrad_out_tile_v2_avx2(k, j0, J, o0);
        FOR_EACH_BLOCK(k->run, wgrad_out_run_avx2[v], BLOCK);
#undef BLOCK
    }
}
#endif

/* wgrad_image for plans with vectors along the output channels (AVX paths only). */
static void wgrad_image_by_output(const wgrad_plan *p, ck_isa isa, const float *buf, const float *g,
                                  float *part, prefetch_stream *prefetch) {
    const ck_conv_shape *s = p->s;
    const int64_t run = s->kernel_w * p->cp;
    wgrad_out_block k = {.cols = p->ow, .run = run, .x_row = s->stride_h * p->bw * p->cp,
                         .x_px = s->stride_w * p->cp, .g_row = p->ow * p->o, .o = p->o, .op = p->op};
    for (int64_t y0 = 0; y0 < p->oh; y0 += p->block_rows) {
        k.rows = min64(p->block_rows, p->oh - y0);
        k.g = g + y0 * p->ow * p->o;
        for (int64_t kh = 0; kh < s->kernel_h; kh++) {
            prefetch_step(prefetch);
            k.x = buf + (y0 * s->stride_h + kh) * p->bw * p->cp;
            k.part = part + kh * run * p->op;
#if defined(__x86_64__)
            if (isa == CK_ISA_AVX512) wgrad_out_block_avx512(&k);
            else wgrad_out_block_avx2(&k);
#else
            (void)isa;
#endif
        }
    }
}

/* Adds one image's products to `part`: blocks of output rows, and within a block every tap. */
static void wgrad_image(const wgrad_plan *p, ck_isa isa, const float *buf, const float *g, float *part,
                        prefetch_stream *prefetch) {
    const ck_conv_shape *s = p->s;
    wgrad_block k = {.cols = p->ow, .x_row = s->stride_h * p->bw * p->cp, .x_px = s->stride_w * p->cp,
                     .g_row = p->ow * p->o, .o = p->o, .part_row = p->taps * p->cp, .cp = p->cp};
    for (int64_t y0 = 0; y0 < p->oh; y0 += p->block_rows) {
        k.rows = min64(p->block_rows, p->oh - y0);
        k.g = g + y0 * p->ow * p->o;
        for (int64_t kh = 0; kh < s->kernel_h; kh++)
            for (int64_t kw = 0; kw < s->kernel_w; kw++) {
                const int64_t t = kh * s->kernel_w + kw;
                prefetch_step(prefetch);
                k.x = buf + ((y0 * s->stride_h + kh) * p->bw + kw) * p->cp;
                k.part = part + t * p->cp;
                switch (isa) {
#if defined(__x86_64__)
                case CK_ISA_AVX512: wgrad_block_avx512(&k); break;
                case CK_ISA_AVX2: wgrad_block_avx2(&k); break;
#endif
                default: wgrad_block_scalar(&k); break;
                }
            }
    }
}

ck_status ck_conv2d_backward_weight_f32(const float *input, const ck_conv_shape *s, const float *grad,
                                        int64_t out_channels, int sign_input, float *weight_grad) {
    if (input == NULL || s == NULL || grad == NULL || weight_grad == NULL) return CK_ERR_NULL_POINTER;
    int64_t oh, ow;
    ck_status status = ck_conv_output_size(s, &oh, &ow);
    if (status != CK_OK) return status;
    if (!ck_size_ok(out_channels)) return CK_ERR_INVALID_SIZE;
    const ck_isa isa = ck_isa_active();
    const int64_t lanes = vector_lanes(isa), c = s->channels, taps = s->kernel_h * s->kernel_w;
    const int64_t cp = ceil_div(c, lanes) * lanes, op = ceil_div(out_channels, lanes) * lanes;
    /* Vectors along whichever channels fill more of their lanes (output channels: o/op > c/cp). */
    const int by_output = isa != CK_ISA_SCALAR && out_channels * cp > c * op;
    wgrad_plan p = {.s = s, .oh = oh, .ow = ow, .o = out_channels, .taps = taps, .cp = by_output ? c : cp,
                    .sign = sign_input != 0, .by_output = by_output, .op = op};
    /* Reads reach buffer row (oh − 1)·stride + kernel − 1, which may be short of the bottom padding. */
    p.bh = max64(s->height + s->pad_h, (oh - 1) * s->stride_h + s->kernel_h);
    p.bw = max64(s->width + s->pad_w, (ow - 1) * s->stride_w + s->kernel_w);
    /* About 8 KB of output gradient per block, with the input rows it reads, fits L1 beside the tiles. */
    p.block_rows = max64(1, 2048 / (ow * out_channels));

    const int threads = (int)min64(ck_get_num_threads(), s->batch);
    const int64_t part_floats = by_output ? taps * c * op : out_channels * taps * cp;
    float *parts = ck_alloc((size_t)(threads * part_floats) * sizeof(float));
    if (parts == NULL) return CK_ERR_OUT_OF_MEMORY;
    const int64_t in_image = s->height * s->width * c, g_image = oh * ow * out_channels;
    const size_t buffer_bytes = (size_t)(p.bh * p.bw * p.cp) * sizeof(float);
    _Atomic int failed = 0;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        /* A static split of the batch: which images a thread sums must not depend on timing. */
        const int64_t team = omp_get_num_threads(), me = omp_get_thread_num();
        float *buf = ck_alloc(buffer_bytes);
        if (buf == NULL) {
            atomic_store(&failed, 1);
        } else {
            const int64_t last = s->batch * (me + 1) / team;
            const int64_t steps = ceil_div(oh, p.block_rows) * (by_output ? s->kernel_h : taps);
            for (int64_t n = s->batch * me / team; n < last; n++) {
                prefetch_stream prefetch =
                    prefetch_plan(n + 1 < last ? input + (n + 1) * in_image : NULL, in_image, steps);
                copy_bordered(input + n * in_image, s->height, s->width, c, p.sign, buf, p.bw, p.cp, s->pad_h,
                              s->pad_w);
                if (by_output)
                    wgrad_image_by_output(&p, isa, buf, grad + n * g_image, parts + me * part_floats, &prefetch);
                else wgrad_image(&p, isa, buf, grad + n * g_image, parts + me * part_floats, &prefetch);
            }
        }
        ck_free(buf);
    }
    if (atomic_load(&failed)) {
        ck_free(parts);
        return CK_ERR_OUT_OF_MEMORY;
    }
    /* Partials in thread order (threads that got no image left theirs at zero). */
    if (by_output) {
        for (int64_t f = 0; f < out_channels; f++)
            for (int64_t j = 0; j < taps * c; j++) {
                float sum = parts[j * op + f];
                for (int th = 1; th < threads; th++) sum += parts[th * part_floats + j * op + f];
                weight_grad[f * taps * c + j] = sum;
            }
    } else {
        for (int64_t f = 0; f < out_channels; f++)
            for (int64_t t = 0; t < taps; t++) {
                float *out = weight_grad + (f * taps + t) * c;
                const float *first = parts + (f * taps + t) * cp;
                memcpy(out, first, (size_t)c * sizeof(float));
                for (int th = 1; th < threads; th++)
                    for (int64_t k = 0; k < c; k++) out[k] += first[th * part_floats + k];
            }
    }
    ck_free(parts);
    return CK_OK;
}
