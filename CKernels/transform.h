/* transform.h — the output transform of the binary convolution and of the engine's float steps, defined once per
 * vector width: scalar (one channel) and AVX-512 (16 channels in a register). Internal; include after internal.h.
 *
 * Per output channel, in this order of float operations:
 *   v = x·pre                   (part CK_PART_PRESCALE)
 *   v = max(v, floor_before)    (floor 0 for CK_RELU_BEFORE, else −∞: no change)
 *   v = v·scale                 (part CK_PART_SCALE)
 *   v = v + bias                (part CK_PART_BIAS)
 *   v = v + residual            (part CK_PART_RESIDUAL)
 *   y = max(v, floor_after)     (floor 0 for CK_RELU_AFTER, else −∞)
 * — the order of a network that computes α·conv, ReLU, batch norm and the residual add as separate float operations,
 * each rounded (the build has -ffp-contract=off: no FMA), so a packed network reproduces its floats bit for bit.
 * A part outside `parts` is skipped, as an absent training op. Callers that want the same loop for every variant
 * pass a part with a neutral value instead (1 for pre and scale, +0 for bias and residual): the same floats except
 * that adding +0 turns a −0 into +0, which no comparison or sign bit sees. `parts` is a constant or loop-invariant
 * at every call, so the tests fold away or are hoisted. */
#ifndef CKERNELS_TRANSFORM_H
#define CKERNELS_TRANSFORM_H

#include <math.h>

enum { CK_PART_PRESCALE = 1, CK_PART_SCALE = 2, CK_PART_BIAS = 4, CK_PART_RESIDUAL = 8, CK_PARTS_ALL = 15 };

/* The floor of a ReLU: 0 when `flags` has `relu` (CK_RELU_BEFORE or CK_RELU_AFTER), else −∞. */
static inline float ck_relu_floor(int flags, int relu) { return (flags & relu) ? 0.0f : -INFINITY; }

/* The transform of one channel's value x. A floor is applied as `v < floor ? floor : v`: a NaN passes through, as
 * through a training ReLU, and a −0 stays −0. */
static inline __attribute__((always_inline)) float ck_transform(const int parts, float x, float pre, float floor_before,
                                                                float scale, float bias, float residual,
                                                                float floor_after) {
    float v = x;
    if (parts & CK_PART_PRESCALE) v = v * pre;
    v = v < floor_before ? floor_before : v;
    if (parts & CK_PART_SCALE) v = v * scale;
    if (parts & CK_PART_BIAS) v = v + bias;
    if (parts & CK_PART_RESIDUAL) v = v + residual;
    return v < floor_after ? floor_after : v;
}

/* Bit j of a word of packed signs for the value y: 1 (−1) where y < 0, so +0, −0 and NaN give 0 (+1), as in every
 * packing here. */
static inline uint64_t ck_sign_bit(float y, int64_t j) { return (uint64_t)(y < 0.0f) << j; }

/* Sign bits of n ≤ 64 floats. */
static inline uint64_t ck_sign_word(const float *y, int64_t n) {
    uint64_t word = 0;
    for (int64_t j = 0; j < n; j++) word |= ck_sign_bit(y[j], j);
    return word;
}

#if defined(__x86_64__)
#include <immintrin.h>

/* The per-channel constants of the transform for up to 64 channels [o0, o0 + nc), 16 per chunk, made once per
 * block of channels. */
typedef struct {
    __mmask16 mask[4];                /* lanes of chunk k inside [o0, o0 + nc) */
    __m512 pre[4], scale[4], bias[4]; /* 1, 1 and 0 for an absent array */
} ck_transform_avx512;

/* The two ReLU floors (ck_relu_floor) in every lane. A struct of their own, apart from the chunks' arrays that are
 * indexed by a loop variable, so that they stay in registers. */
typedef struct {
    __m512 before, after;
} ck_floors_avx512;

static inline __attribute__((always_inline, target("avx512f"))) void
ck_transform_avx512_init(ck_transform_avx512 *c, const int chunks, const float *prescale, const float *scale,
                         const float *bias, int64_t o0, int64_t nc) {
    for (int k = 0; k < chunks; k++) {
        const int64_t left = nc - 16 * k, first = o0 + 16 * k;
        c->mask[k] = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
        c->pre[k] = prescale != NULL ? _mm512_maskz_loadu_ps(c->mask[k], prescale + first) : _mm512_set1_ps(1.0f);
        c->scale[k] = scale != NULL ? _mm512_maskz_loadu_ps(c->mask[k], scale + first) : _mm512_set1_ps(1.0f);
        c->bias[k] = bias != NULL ? _mm512_maskz_loadu_ps(c->mask[k], bias + first) : _mm512_setzero_ps();
    }
}

static inline __attribute__((always_inline, target("avx512f"))) ck_floors_avx512 ck_floors_avx512_of(int flags) {
    return (ck_floors_avx512){_mm512_set1_ps(ck_relu_floor(flags, CK_RELU_BEFORE)),
                              _mm512_set1_ps(ck_relu_floor(flags, CK_RELU_AFTER))};
}

/* ck_transform on the 16 channels of chunk k, values x. The residual part adds the 16 floats at residual + at
 * (in the chunk's lanes), or +0 if `residual` is NULL. _mm512_max_ps(floor, v) returns its second operand v when
 * either is NaN and when both are zeros, which is `v < floor ? floor : v`: the operand order matters. */
static inline __attribute__((always_inline, target("avx512f"))) __m512
ck_transform_avx512_apply(const int parts, const ck_transform_avx512 *c, int k, ck_floors_avx512 floors, __m512 x,
                          const float *residual, int64_t at) {
    __m512 v = x;
    if (parts & CK_PART_PRESCALE) v = _mm512_mul_ps(v, c->pre[k]);
    v = _mm512_max_ps(floors.before, v);
    if (parts & CK_PART_SCALE) v = _mm512_mul_ps(v, c->scale[k]);
    if (parts & CK_PART_BIAS) v = _mm512_add_ps(v, c->bias[k]);
    if (parts & CK_PART_RESIDUAL)
        v = _mm512_add_ps(v, residual != NULL ? _mm512_maskz_loadu_ps(c->mask[k], residual + at) : _mm512_setzero_ps());
    return _mm512_max_ps(floors.after, v);
}

/* Sign bits of chunk k's lanes of y, as ck_sign_word: lane j where y < 0 (an ordered comparison: NaN gives 0). */
static inline __attribute__((always_inline, target("avx512f"))) __mmask16
ck_transform_avx512_signs(const ck_transform_avx512 *c, int k, __m512 y) {
    return _mm512_mask_cmp_ps_mask(c->mask[k], y, _mm512_setzero_ps(), _CMP_LT_OQ);
}
#endif

#endif
