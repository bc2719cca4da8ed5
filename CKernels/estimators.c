/* estimators.c — the backward of sign(x) for each estimator (ReSTE, STE, identity, ApproxSign, EDE) as one
 * fused pass dx (= or +=) grad · r'(x), plus the small passes a binary layer needs around it: α = mean|W|,
 * α·sign(W), Σ grad·sign(W) for the gradient through α, and the two indicators of the paper.
 *
 * The estimator passes run over every activation entering a binary convolution (tens of millions of floats
 * per training step), so they must vectorise: each r'(x) is computed for every element with selects instead
 * of branches, and the power of ReSTE and the exponential of EDE use the polynomial log/exp below (libm's
 * powf/expf are calls the compiler cannot vectorise). The loops are compiled three times (default, AVX2,
 * AVX-512) and chosen by ck_isa_active(), so tests can run each path; without contraction (-ffp-contract=off)
 * all three perform the same IEEE operations and give identical bits.
 *
 * Reductions sum fixed blocks of BLOCK elements in double, then add the block sums in order on one thread,
 * so results do not depend on the thread count. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK ((int64_t)16384)
#define BLOCK ((int64_t)4096)
#define MAX_ELEMENTS ((int64_t)1 << 40)

#define ALWAYS_INLINE inline __attribute__((always_inline))

static inline bool count_ok(int64_t n) { return n >= 1 && n <= MAX_ELEMENTS; }
static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ---------------------------------------------------------------------------------------------- */
/* Vectorisable log and exp                                                                        */

/* ln 2 split so that e·LN2_HI is exact for the small integers e used here. */
#define LN2_HI 0.693145751953125f
#define LN2_LO 1.428606765330187e-06f
#define LOG2E 1.44269504088896341f
/* Adding and subtracting 1.5·2^23 rounds a float of magnitude < 2^22 to the nearest integer. */
#define ROUND_MAGIC 12582912.0f

static ALWAYS_INLINE float bits_to_float(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static ALWAYS_INLINE uint32_t float_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* ln(a) for a normal positive finite float: a = 2^e·m with m in [√½, √2), ln m = 2·atanh(s), s = (m−1)/(m+1),
 * |s| ≤ 0.172, so the odd series to s⁹ is within 2e-9 relative. */
static ALWAYS_INLINE float log_normal(float a) {
    const uint32_t bits = float_to_bits(a);
    int32_t e = (int32_t)(bits >> 23) - 127;
    float m = bits_to_float((bits & 0x007fffffu) | 0x3f800000u); /* [1, 2) */
    const int big = m > 1.41421356f;
    m = big ? 0.5f * m : m;
    e += big;
    const float f = m - 1.0f;
    const float s = f / (2.0f + f);
    const float z = s * s;
    const float series = 1.0f + z * (1.0f / 3 + z * (1.0f / 5 + z * (1.0f / 7 + z * (1.0f / 9))));
    const float fe = (float)e;
    return fe * LN2_HI + (fe * LN2_LO + 2.0f * s * series);
}

/* exp(y) with y clamped to [−87, 88] (normal results): y = n·ln 2 + r, |r| ≤ ½·ln 2, Taylor to r⁷ (error
 * below 6e-9 relative), times 2^n built from its bits. exp(0) is exactly 1. */
static ALWAYS_INLINE float exp_clamped(float y) {
    y = y < -87.0f ? -87.0f : (y > 88.0f ? 88.0f : y);
    const float n = (y * LOG2E + ROUND_MAGIC) - ROUND_MAGIC;
    const float r = (y - n * LN2_HI) - n * LN2_LO;
    const float p =
        1.0f +
        r * (1.0f +
             r * (1.0f / 2 +
                  r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720 + r * (1.0f / 5040)))))));
    const float scale = bits_to_float((uint32_t)((int32_t)n + 127) << 23);
    return p * scale;
}

/* ---------------------------------------------------------------------------------------------- */
/* Estimator passes                                                                                 */

/* r'(x) of ReSTE. NaN x gives 0 (every comparison fails), as masks would in PyTorch. */
static ALWAYS_INLINE float reste_derivative(float v, const est_params *p) {
    const float a = fabsf(v);
    /* The power is evaluated for every element; clamping its argument into (δ, t] keeps it finite where the
     * select discards it. */
    const float clamped = a > p->delta ? (a < p->threshold ? a : p->threshold) : p->delta;
    const float power = p->inv_o * exp_clamped(p->power * log_normal(clamped));
    return a <= p->threshold ? (a > p->delta ? power : p->flat) : 0.0f;
}

/* r'(x) of EDE: k·t·(1 − tanh²(t·x)) = k·t·4w/(1 + w)² with w = exp(−2|t·x|), which avoids the cancellation
 * of 1 − tanh² for large |t·x|; 0 once w would leave the normal range, and for NaN. */
static ALWAYS_INLINE float ede_derivative(float v, const est_params *p) {
    const float y = -2.0f * fabsf(p->t * v);
    const float w = exp_clamped(y);
    const float one_plus = 1.0f + w;
    const float sech2 = (4.0f * w) / (one_plus * one_plus);
    return y >= -87.0f ? p->kt * sech2 : 0.0f;
}

/* The pass over `spans` runs of `span` elements, run s starting at element first + s·step: a whole chunk of a
 * tensor (one run), or a row of an input gradient with its pixels a stride apart. */
#define EST_LOOP(VALUE)                                                                                        \
    for (int64_t s_ = 0; s_ < spans; s_++) {                                                                   \
        const int64_t begin = first + s_ * step, end = begin + span;                                           \
        if (accumulate) {                                                                                      \
            for (int64_t i = begin; i < end; i++) {                                                            \
                const float v = x[i], g = grad[i];                                                             \
                dx[i] += (VALUE);                                                                              \
            }                                                                                                  \
        } else {                                                                                               \
            for (int64_t i = begin; i < end; i++) {                                                            \
                const float v = x[i], g = grad[i];                                                             \
                dx[i] = (VALUE);                                                                               \
            }                                                                                                  \
        }                                                                                                      \
    }

static ALWAYS_INLINE void est_runs(const est_params *params, const float *x, const float *grad, int accumulate,
                                   float *dx, int64_t first, int64_t spans, int64_t span, int64_t step) {
    /* A local copy: the stores to dx cannot alias it, so its fields stay in registers across the loop. */
    const est_params local = *params;
    const est_params *p = &local;
    switch (p->kind) {
    case CK_ESTIMATOR_RESTE:
        if (p->inv_o == 1.0f && p->power == 0.0f && p->flat == 1.0f) {
            /* o = 1: the power is exactly 1 and the secant slope 1, so r' is the clip at the threshold. */
            const float threshold = p->threshold;
            EST_LOOP((fabsf(v) <= threshold ? 1.0f : 0.0f) * g);
        } else {
            EST_LOOP(reste_derivative(v, p) * g);
        }
        break;
    case CK_ESTIMATOR_CLIPPED_STE: {
        /* A select rather than a product, as PyTorch's masked STE: the gradient passes unchanged or is 0. */
        const float limit = p->threshold;
        EST_LOOP(fabsf(v) <= limit ? g : 0.0f);
        break;
    }
    case CK_ESTIMATOR_IDENTITY:
        for (int64_t s_ = 0; s_ < spans; s_++) {
            const int64_t begin = first + s_ * step;
            if (accumulate) {
                for (int64_t i = begin; i < begin + span; i++) dx[i] += grad[i];
            } else if (dx != grad) {
                memcpy(dx + begin, grad + begin, (size_t)span * sizeof(float));
            }
        }
        break;
    case CK_ESTIMATOR_APPROX_SIGN:
        EST_LOOP((fabsf(v) <= 1.0f ? 2.0f - 2.0f * fabsf(v) : 0.0f) * g);
        break;
    case CK_ESTIMATOR_EDE:
        EST_LOOP(ede_derivative(v, p) * g);
        break;
    }
}

static void est_runs_default(const est_params *p, const float *x, const float *grad, int accumulate, float *dx,
                             int64_t first, int64_t spans, int64_t span, int64_t step) {
    est_runs(p, x, grad, accumulate, dx, first, spans, span, step);
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) static void est_runs_avx2(const est_params *p, const float *x, const float *grad,
                                                          int accumulate, float *dx, int64_t first, int64_t spans,
                                                          int64_t span, int64_t step) {
    est_runs(p, x, grad, accumulate, dx, first, spans, span, step);
}

__attribute__((target("avx512f"))) static void est_runs_avx512(const est_params *p, const float *x,
                                                               const float *grad, int accumulate, float *dx,
                                                               int64_t first, int64_t spans, int64_t span,
                                                               int64_t step) {
    est_runs(p, x, grad, accumulate, dx, first, spans, span, step);
}
#endif

est_runs_fn est_runs_for_active_isa(void) {
#if defined(__x86_64__)
    switch (ck_isa_active()) {
    case CK_ISA_AVX512: return est_runs_avx512;
    case CK_ISA_AVX2: return est_runs_avx2;
    case CK_ISA_SCALAR: break;
    }
#endif
    return est_runs_default;
}

/* Runs one estimator pass over n elements in fixed chunks (small tensors stay on the calling thread). */
static ck_status run_estimator(const est_params *p, const float *x, const float *grad, int64_t n, int accumulate,
                               float *dx) {
    if ((x == NULL && p->kind != CK_ESTIMATOR_IDENTITY) || grad == NULL || dx == NULL) return CK_ERR_NULL_POINTER;
    if (!count_ok(n)) return CK_ERR_INVALID_SIZE;
    const est_runs_fn runs = est_runs_for_active_isa();
    const int64_t chunks = (n + CHUNK - 1) / CHUNK;
    const int threads = ck_get_num_threads();
#pragma omp parallel for num_threads(threads) if (chunks > 1)
    for (int64_t ch = 0; ch < chunks; ch++) runs(p, x, grad, accumulate, dx, ch * CHUNK, 1, min64(n - ch * CHUNK, CHUNK), 0);
    return CK_OK;
}

ck_status est_params_make(const ck_estimator *e, est_params *p) {
    if (e == NULL || p == NULL) return CK_ERR_NULL_POINTER;
    *p = (est_params){.kind = e->kind};
    switch (e->kind) {
    case CK_ESTIMATOR_RESTE: {
        const float o = e->o, threshold = e->threshold, delta = e->delta;
        if (!(o > 0.0f) || !isfinite(o) || !(delta > 0.0f) || !(threshold >= delta) || !isfinite(threshold))
            return CK_ERR_INVALID_SIZE;
        p->threshold = threshold;
        p->delta = delta;
        p->inv_o = 1.0f / o;
        p->power = (1.0f - o) / o;
        /* The secant slope in double, rounded once: δ^(1/o)/δ = δ^((1−o)/o). */
        p->flat = (float)(pow((double)delta, 1.0 / (double)o) / (double)delta);
        return CK_OK;
    }
    case CK_ESTIMATOR_CLIPPED_STE:
        if (!(e->threshold >= 0.0f)) return CK_ERR_INVALID_SIZE;
        p->threshold = e->threshold;
        return CK_OK;
    case CK_ESTIMATOR_IDENTITY:
    case CK_ESTIMATOR_APPROX_SIGN: return CK_OK;
    case CK_ESTIMATOR_EDE:
        if (!(e->t > 0.0f) || !isfinite(e->t) || !isfinite(e->k)) return CK_ERR_INVALID_SIZE;
        p->t = e->t;
        p->kt = e->k * e->t;
        return CK_OK;
    }
    return CK_ERR_INVALID_SIZE;
}

ck_status ck_estimator_backward_f32(const ck_estimator *e, const float *x, const float *grad, int64_t n,
                                    int accumulate, float *dx) {
    est_params p;
    const ck_status status = est_params_make(e, &p);
    return status == CK_OK ? run_estimator(&p, x, grad, n, accumulate, dx) : status;
}

ck_status ck_reste_backward_f32(const float *x, const float *grad, int64_t n, float o, float threshold, float delta,
                                int accumulate, float *dx) {
    const ck_estimator e = {.kind = CK_ESTIMATOR_RESTE, .o = o, .threshold = threshold, .delta = delta};
    return ck_estimator_backward_f32(&e, x, grad, n, accumulate, dx);
}

ck_status ck_clipped_ste_backward_f32(const float *x, const float *grad, int64_t n, float limit, int accumulate,
                                      float *dx) {
    const ck_estimator e = {.kind = CK_ESTIMATOR_CLIPPED_STE, .threshold = limit};
    return ck_estimator_backward_f32(&e, x, grad, n, accumulate, dx);
}

ck_status ck_identity_ste_backward_f32(const float *grad, int64_t n, int accumulate, float *dx) {
    const ck_estimator e = {.kind = CK_ESTIMATOR_IDENTITY};
    return ck_estimator_backward_f32(&e, NULL, grad, n, accumulate, dx);
}

ck_status ck_approx_sign_backward_f32(const float *x, const float *grad, int64_t n, int accumulate, float *dx) {
    const ck_estimator e = {.kind = CK_ESTIMATOR_APPROX_SIGN};
    return ck_estimator_backward_f32(&e, x, grad, n, accumulate, dx);
}

ck_status ck_ede_backward_f32(const float *x, const float *grad, int64_t n, float t, float k, int accumulate,
                              float *dx) {
    const ck_estimator e = {.kind = CK_ESTIMATOR_EDE, .t = t, .k = k};
    return ck_estimator_backward_f32(&e, x, grad, n, accumulate, dx);
}

/* ---------------------------------------------------------------------------------------------- */
/* Binary weights: sign, α and the gradient through α                                              */

ck_status ck_sign_f32(const float *x, int64_t n, float scale, int accumulate, float *y) {
    if (x == NULL || y == NULL) return CK_ERR_NULL_POINTER;
    if (!count_ok(n)) return CK_ERR_INVALID_SIZE;
    const int64_t chunks = (n + CHUNK - 1) / CHUNK;
    const int threads = ck_get_num_threads();
    const float negative = -scale;
#pragma omp parallel for num_threads(threads) if (chunks > 1)
    for (int64_t ch = 0; ch < chunks; ch++) {
        const int64_t end = min64(n, (ch + 1) * CHUNK);
        /* x < 0 is false for −0 and NaN: both count as +1, as the bit packing does. */
        if (accumulate) {
            for (int64_t i = ch * CHUNK; i < end; i++) y[i] += x[i] < 0.0f ? negative : scale;
        } else {
            for (int64_t i = ch * CHUNK; i < end; i++) y[i] = x[i] < 0.0f ? negative : scale;
        }
    }
    return CK_OK;
}

/* What one block contributes to a reduction. */
typedef enum { SUM_ABS, SUM_ABS_SQUARED_DEVIATION, SUM_SIGN_DOT, SUM_POWER_ERROR } sum_kind;

static double block_sum(sum_kind kind, const float *x, const float *g, double center, double power, int64_t begin,
                        int64_t end) {
    double s = 0.0;
    switch (kind) {
    case SUM_ABS:
        for (int64_t i = begin; i < end; i++) s += fabs((double)x[i]);
        break;
    case SUM_ABS_SQUARED_DEVIATION:
        for (int64_t i = begin; i < end; i++) {
            const double d = fabs((double)x[i]) - center;
            s += d * d;
        }
        break;
    case SUM_SIGN_DOT:
        for (int64_t i = begin; i < end; i++) s += x[i] < 0.0f ? -(double)g[i] : (double)g[i];
        break;
    case SUM_POWER_ERROR:
        /* (sign(w)·|w|^(1/o) − sign(w))² = (|w|^(1/o) − 1)², whatever the sign. */
        for (int64_t i = begin; i < end; i++) {
            const double d = pow(fabs((double)x[i]), power) - 1.0;
            s += d * d;
        }
        break;
    }
    return s;
}

/* Σ over n elements in blocks of BLOCK, block sums added in block order: independent of the thread count. */
static ck_status reduce(sum_kind kind, const float *x, const float *g, double center, double power, int64_t n,
                        double *out) {
    const int64_t blocks = (n + BLOCK - 1) / BLOCK;
    if (blocks == 1) {
        *out = block_sum(kind, x, g, center, power, 0, n);
        return CK_OK;
    }
    double *partial = malloc((size_t)blocks * sizeof(double));
    if (partial == NULL) return CK_ERR_OUT_OF_MEMORY;
    const int threads = ck_get_num_threads();
#pragma omp parallel for num_threads(threads) if (n > CHUNK)
    for (int64_t b = 0; b < blocks; b++) partial[b] = block_sum(kind, x, g, center, power, b * BLOCK, min64(n, (b + 1) * BLOCK));
    double total = 0.0;
    for (int64_t b = 0; b < blocks; b++) total += partial[b];
    free(partial);
    *out = total;
    return CK_OK;
}

ck_status ck_abs_moments_f32(const float *x, int64_t n, double *mean, double *squared_deviations) {
    if (x == NULL || mean == NULL) return CK_ERR_NULL_POINTER;
    if (!count_ok(n)) return CK_ERR_INVALID_SIZE;
    double sum = 0.0;
    ck_status status = reduce(SUM_ABS, x, NULL, 0.0, 0.0, n, &sum);
    if (status != CK_OK) return status;
    const double m = sum / (double)n;
    if (squared_deviations != NULL) {
        status = reduce(SUM_ABS_SQUARED_DEVIATION, x, NULL, m, 0.0, n, squared_deviations);
        if (status != CK_OK) return status;
    }
    *mean = m;
    return CK_OK;
}

ck_status ck_sign_dot_f32(const float *x, const float *g, int64_t n, double *out) {
    if (x == NULL || g == NULL || out == NULL) return CK_ERR_NULL_POINTER;
    if (!count_ok(n)) return CK_ERR_INVALID_SIZE;
    return reduce(SUM_SIGN_DOT, x, g, 0.0, 0.0, n, out);
}

ck_status ck_estimating_error_f32(const float *w, int64_t n, float o, double *out) {
    if (w == NULL || out == NULL) return CK_ERR_NULL_POINTER;
    if (!count_ok(n) || !(o > 0.0f) || !isfinite(o)) return CK_ERR_INVALID_SIZE;
    double sum = 0.0;
    const ck_status status = reduce(SUM_POWER_ERROR, w, NULL, 0.0, 1.0 / (double)o, n, &sum);
    if (status != CK_OK) return status;
    *out = sqrt(sum);
    return CK_OK;
}
