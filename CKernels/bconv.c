/* bconv.c — binary conv2d on packed NHWC input, exact zero-padding correction, fused output transform,
 * and binary max-pool.
 *
 * A convolution is a bgemm: row p is the packed patch under output pixel p (bit-level im2col), column o is
 * filter o packed the same way, and popcounts come from the bgemm micro-kernels.
 *
 * Zero padding: a padded tap's bits are 0, which means +1, so it adds Σ_c w[o][c][tap] — the filter's
 * "tap sum" — where the zero-padded convolution adds 0. Each output pixel whose window crosses the border
 * subtracts the tap sums of its padded taps: the result is the exact integer of the float convolution of
 * the ±1 input padded with zeros. */
#include "internal.h"
#include "transform.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct ck_bconv_weights {
    int64_t out_channels, channels, kernel_h, kernel_w;
    int64_t row_bits;     /* bits per kernel row in a patch: kernel row a starts at bit a·row_bits */
    int64_t patch_words;  /* words per patch row */
    int32_t *tap_sum;     /* [kh·kw][out_channels]: Σ_c of the ±1 weights of each tap */
    ck_bgemm_weights gemm; /* filters as patch rows, in bgemm panels */
};

/* Rows of filters in patch layout, built once at creation. */
typedef struct {
    const uint64_t *rows;
    int64_t words;
} patch_rows;

static const uint64_t *patch_row(const void *ctx, int64_t j) {
    const patch_rows *p = ctx;
    return p->rows + j * p->words;
}

static inline uint64_t low_mask(int64_t bits) { return bits >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << bits) - 1); }

/* ORs `bits` bits of `src` (ck_words(bits) words, bits past `bits` ignored) into `dst` at bit `offset`. */
static inline void put_bits(uint64_t *dst, int64_t offset, const uint64_t *src, int64_t bits) {
    const int64_t shift = offset & 63;
    uint64_t *d = dst + (offset >> 6);
    for (int64_t w = 0; w * 64 < bits; w++) {
        const int64_t n = bits - w * 64 < 64 ? bits - w * 64 : 64;
        const uint64_t v = src[w] & low_mask(n);
        d[w] |= v << shift;
        /* Touch the next word only if bits spill into it: it may be past the end of the row. */
        if (shift + n > 64) d[w + 1] |= v >> (64 - shift);
    }
}

/* Patch layouts. Tap (a, b) of a patch starts at bit a·row_bits + b·C:
 *  - C a multiple of 64: row_bits = kw·C, taps are whole words and a kernel row is a run of words that the
 *    micro-kernel reads in place from the zero-padded input;
 *  - otherwise, "segments": each kernel row padded to whole words (row_bits = 64·ck_words(kw·C)), so the gather
 *    is one shifted copy per kernel row — unless that wastes over a quarter of the words, then
 *  - "tight": row_bits = kw·C, one bit string of kh·kw·C bits (e.g. C = 3 under a 7×7 kernel). */
static int64_t choose_row_bits(int64_t c, int64_t kh, int64_t kw) {
    if (c % 64 == 0) return kw * c;
    const int64_t segments = kh * ck_words(kw * c), tight = ck_words(kh * kw * c);
    return 4 * segments <= 5 * tight ? 64 * ck_words(kw * c) : kw * c;
}

/* Writes the bits of filter rows / input pixels for tap (a, b) into a patch row (zeroed beforehand). */
static inline void put_tap(const ck_bconv_weights *w, uint64_t *patch, int64_t a, int64_t b, const uint64_t *pixel) {
    put_bits(patch, a * w->row_bits + b * w->channels, pixel, w->channels);
}

/* The patch rows are gathered (C not a multiple of 64) rather than read in place. */
static inline int gathered(const ck_bconv_weights *w) { return w->channels % 64 != 0; }

/* Segments with C < 64 are gathered as "row words": for each zero-padded input row y and word i of a kernel-row
 * run, the ow words that output columns 0..ow−1 would read there, at [(n·hp + y)·run_words + i]·ow + ox. Kernel row
 * a of output pixel (oy, ox) is then row oy·stride + a, so a patch row is kh·run_words runs of one word, ow words
 * apart, starting at [(n·hp + oy·stride)·run_words]·ow + ox — each input row is gathered once, not once per kernel
 * row. Each input pixel is one word, so a run word is a few input words shifted by amounts fixed per layer, and
 * consecutive output columns go to consecutive words (vector stores). Other gathered layouts build patch rows from
 * compact bit strings of the input rows. */
static inline int by_row_words(const ck_bconv_weights *w) { return w->channels < 64 && w->row_bits % 64 == 0; }

static ck_status create(const uint64_t *ohwi_bits, int64_t o, int64_t c, int64_t kh, int64_t kw,
                        ck_bconv_weights **out) {
    const int64_t taps = kh * kw, cw = ck_words(c);
    ck_bconv_weights *w = ck_alloc(sizeof *w);
    if (w == NULL) return CK_ERR_OUT_OF_MEMORY;
    *w = (ck_bconv_weights){.out_channels = o, .channels = c, .kernel_h = kh, .kernel_w = kw};
    w->row_bits = choose_row_bits(c, kh, kw);
    w->patch_words = ck_words((kh - 1) * w->row_bits + kw * c);
    w->tap_sum = ck_alloc((size_t)(taps * o) * sizeof(int32_t));
    uint64_t *rows = ck_alloc((size_t)(o * w->patch_words) * sizeof(uint64_t));
    ck_status status = (w->tap_sum == NULL || rows == NULL) ? CK_ERR_OUT_OF_MEMORY : CK_OK;
    for (int64_t f = 0; status == CK_OK && f < o; f++) {
        for (int64_t tap = 0; tap < taps; tap++) {
            const uint64_t *src = ohwi_bits + (f * taps + tap) * cw;
            put_tap(w, rows + f * w->patch_words, tap / kw, tap % kw, src);
            int64_t negative = 0;
            for (int64_t i = 0; i < cw; i++) negative += __builtin_popcountll(src[i] & low_mask(c - i * 64));
            w->tap_sum[tap * o + f] = (int32_t)(c - 2 * negative);
        }
    }
    if (status == CK_OK) {
        patch_rows ctx = {rows, w->patch_words};
        status = ck_bgemm_weights_init(&w->gemm, o, w->patch_words * 64, patch_row, &ctx);
    }
    ck_free(rows);
    if (status != CK_OK) {
        ck_bconv_weights_destroy(w);
        return status;
    }
    *out = w;
    return CK_OK;
}

static ck_status check_weight_sizes(int64_t o, int64_t c, int64_t kh, int64_t kw) {
    if (!ck_size_ok(o) || !ck_size_ok(c) || !ck_size_ok(kh) || !ck_size_ok(kw)) return CK_ERR_INVALID_SIZE;
    if (kh * kw > CK_MAX_DIM || kh * kw * c > CK_MAX_DIM || o * kh * kw * c > CK_MAX_DIM * 64)
        return CK_ERR_INVALID_SIZE;
    return CK_OK;
}

ck_status ck_bconv_weights_create_from_bits(const uint64_t *bits, int64_t o, int64_t c, int64_t kh, int64_t kw,
                                            ck_bconv_weights **out) {
    if (out == NULL) return CK_ERR_NULL_POINTER;
    *out = NULL;
    if (bits == NULL) return CK_ERR_NULL_POINTER;
    ck_status status = check_weight_sizes(o, c, kh, kw);
    if (status != CK_OK) return status;
    return create(bits, o, c, kh, kw, out);
}

ck_status ck_bconv_weights_create(const float *w_oihw, int64_t o, int64_t c, int64_t kh, int64_t kw,
                                  ck_bconv_weights **out) {
    if (out == NULL) return CK_ERR_NULL_POINTER;
    *out = NULL;
    if (w_oihw == NULL) return CK_ERR_NULL_POINTER;
    ck_status status = check_weight_sizes(o, c, kh, kw);
    if (status != CK_OK) return status;
    const int64_t taps = kh * kw, cw = ck_words(c);
    /* OIHW → OHWI sign bits, the layout of packed NHWC activations. */
    uint64_t *bits = ck_alloc((size_t)(o * taps * cw) * sizeof(uint64_t));
    if (bits == NULL) return CK_ERR_OUT_OF_MEMORY;
    for (int64_t f = 0; f < o; f++)
        for (int64_t ch = 0; ch < c; ch++)
            for (int64_t tap = 0; tap < taps; tap++)
                if (w_oihw[(f * c + ch) * taps + tap] < 0.0f)
                    bits[(f * taps + tap) * cw + (ch >> 6)] |= (uint64_t)1 << (ch & 63);
    status = create(bits, o, c, kh, kw, out);
    ck_free(bits);
    return status;
}

void ck_bconv_weights_destroy(ck_bconv_weights *w) {
    if (w == NULL) return;
    ck_bgemm_weights_free(&w->gemm);
    ck_free(w->tap_sum);
    ck_free(w);
}

int ck_bconv_weights_bit_level(const ck_bconv_weights *w) {
    if (w == NULL) return -1;
    return w->patch_words < w->kernel_h * w->kernel_w * ck_words(w->channels);
}

ck_status ck_bconv_weights_dims(const ck_bconv_weights *w, int64_t *out_channels, int64_t *channels,
                                int64_t *kernel_h, int64_t *kernel_w) {
    if (w == NULL) return CK_ERR_NULL_POINTER;
    if (out_channels != NULL) *out_channels = w->out_channels;
    if (channels != NULL) *channels = w->channels;
    if (kernel_h != NULL) *kernel_h = w->kernel_h;
    if (kernel_w != NULL) *kernel_w = w->kernel_w;
    return CK_OK;
}

/* Output pixels per unit of work, and output channels per unit: 64, so each unit writes whole words of
 * the packed-sign output and no two threads share a word. */
enum { PIXEL_BLOCK = 96, CHANNEL_BLOCK = 64 };
_Static_assert(CHANNEL_BLOCK <= 4 * 16, "a block of channels is at most the 4 chunks of ck_transform_avx512");

/* Exact zero padding: an output pixel whose window crosses the border counted each padded tap as +1; subtract
 * those taps' filter sums from its dot products acc[0..nc) (channels o0...). */
static inline void correct_border(const ck_bconv_weights *w, const ck_conv_shape *s, int64_t oy, int64_t ox,
                                  int64_t o0, int64_t nc, int32_t *acc) {
    const int64_t kh = w->kernel_h, kw = w->kernel_w;
    const int64_t y0 = oy * s->stride_h - s->pad_h, x0 = ox * s->stride_w - s->pad_w;
    if (y0 >= 0 && x0 >= 0 && y0 + kh <= s->height && x0 + kw <= s->width) return;
    for (int64_t a = 0; a < kh; a++) {
        for (int64_t b = 0; b < kw; b++) {
            if (y0 + a >= 0 && y0 + a < s->height && x0 + b >= 0 && x0 + b < s->width) continue;
            const int32_t *sum = w->tap_sum + (a * kw + b) * w->out_channels + o0;
            for (int64_t j = 0; j < nc; j++) acc[j] -= sum[j];
        }
    }
}

/* Writes outputs [o0, o0+nc) of `pixels` consecutive output pixels starting at p0, from the dot products
 * of their patches (padded taps counted as +1), which it corrects in place. `prescale` (NULL: none) multiplies
 * the integer before the first ReLU, so y = max(acc·prescale, 0)·scale + bias reproduces, operation for
 * operation, a network that computes α·acc, then ReLU, then batch norm. Branch-free inner loops: every part of
 * the transform is applied, an absent one with its neutral value (prescale and scale 1, bias and residual +0),
 * the floor of an absent ReLU −∞. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
transform_block(const ck_bconv_weights *w, const ck_output_transform *t, const float *prescale, int64_t oh,
                int64_t ow, const ck_conv_shape *s, int64_t p0, int64_t pixels, int64_t o0, int64_t nc, int32_t *dot,
                int64_t ldd) {
    const int64_t o = w->out_channels;
    float pre[CHANNEL_BLOCK], scale[CHANNEL_BLOCK], bias[CHANNEL_BLOCK], zero[CHANNEL_BLOCK], y[CHANNEL_BLOCK];
    for (int64_t j = 0; j < nc; j++) {
        pre[j] = prescale != NULL ? prescale[o0 + j] : 1.0f;
        scale[j] = t->scale != NULL ? t->scale[o0 + j] : 1.0f;
        bias[j] = t->bias != NULL ? t->bias[o0 + j] : 0.0f;
        zero[j] = 0.0f;
    }
    const float floor_before = ck_relu_floor(t->flags, CK_RELU_BEFORE);
    const float floor_after = ck_relu_floor(t->flags, CK_RELU_AFTER);
    const int want_float = t->out != NULL || t->out_bits != NULL;
    /* Output coordinates advance with the pixel index, no division per pixel. */
    int64_t oy = (p0 / ow) % oh, ox = p0 % ow;
    for (int64_t i = 0; i < pixels; i++, ox = ox + 1 == ow ? 0 : ox + 1, oy = ox == 0 ? (oy + 1 == oh ? 0 : oy + 1) : oy) {
        const int64_t p = p0 + i;
        int32_t *restrict acc = dot + i * ldd;
        correct_border(w, s, oy, ox, o0, nc, acc);
        if (t->out_int != NULL) memcpy(t->out_int + p * o + o0, acc, (size_t)nc * sizeof(int32_t));
        if (!want_float) continue;
        const float *restrict r = t->residual != NULL ? t->residual + p * o + o0 : zero;
        float *restrict dst = t->out != NULL ? t->out + p * o + o0 : y;
        for (int64_t j = 0; j < nc; j++)
            dst[j] = ck_transform(CK_PARTS_ALL, (float)acc[j], pre[j], floor_before, scale[j], bias[j], r[j],
                                  floor_after);
        if (t->out_bits != NULL) t->out_bits[p * ck_words(o) + o0 / 64] = ck_sign_word(dst, nc);
    }
}

/* Where the patch row of output pixel (n, oy, ox) starts: base + n·image + oy·row + ox·column, in every layout. */
typedef struct {
    const uint64_t *base;
    int64_t image, row, column;
} patch_rows_at;

/* Pointers to the patch rows of `count` consecutive output pixels from p0. */
/* Walks output pixels in order (image, row, column) and points at each one's patch row. */
typedef struct {
    const patch_rows_at *at;
    int64_t oh, ow, n, oy, ox;
    const uint64_t *line; /* the patch rows of output row oy of image n */
} pixel_cursor;

static inline pixel_cursor pixel_cursor_at(const patch_rows_at *at, int64_t oh, int64_t ow, int64_t p0) {
    pixel_cursor c = {at, oh, ow, p0 / (oh * ow), (p0 / ow) % oh, p0 % ow, NULL};
    c.line = at->base + c.n * at->image + c.oy * at->row;
    return c;
}

static inline const uint64_t *pixel_cursor_row(const pixel_cursor *c) { return c->line + c->ox * c->at->column; }

static inline void pixel_cursor_next(pixel_cursor *c) {
    if (++c->ox == c->ow) {
        c->ox = 0;
        if (++c->oy == c->oh) {
            c->oy = 0;
            c->n++;
        }
        c->line = c->at->base + c->n * c->at->image + c->oy * c->at->row;
    }
}

static void patch_row_pointers(const patch_rows_at *at, int64_t oh, int64_t ow, int64_t p0, int64_t count,
                               const uint64_t **rows) {
    pixel_cursor c = pixel_cursor_at(at, oh, ow, p0);
    for (int64_t i = 0; i < count; i++, pixel_cursor_next(&c)) rows[i] = pixel_cursor_row(&c);
}

/* Border corrections by class (for the fused AVX-512 path): consecutive output rows whose windows have the same
 * kernel rows in the padding form a row class, likewise columns, and the table holds for each pair of classes the
 * sum of the tap sums of its taps in the padding — so a border pixel's correction is one load per 16 channels,
 * the same integers correct_border subtracts. A coordinate's class changes at most 2k times (the first and the
 * last tap inside each move at most k times), so there are at most min(n, 2k + 1) classes.
 *
 * The table is int32 values: a header {row classes, column classes, inner row class, inner column class} (inner:
 * no tap in the padding, −1 if none), the class of each output row and column, the taps [lo, hi) inside the input
 * of each row class and each column class, and the sums [row class][column class][O]. It depends on the geometry
 * and the weights only, so the packed-network executor fills it once per layer (ck_bconv_border_fill); ck_bconv2d
 * fills it in the workspace at each call. */
typedef struct {
    const int32_t *row_class, *col_class; /* class of each output row and column */
    int32_t inner_row, inner_col;
    int64_t col_classes;
    const int32_t *sums;
} border_table;

enum { BORDER_HEADER = 4 };

static int64_t class_bound(int64_t n, int64_t k) { return n < 2 * k + 1 ? n : 2 * k + 1; }

/* int32 values of a border table for the geometry `s` (output oh × ow). */
static int64_t border_table_ints(const ck_conv_shape *s, const ck_bconv_weights *w, int64_t oh, int64_t ow) {
    const int64_t rows = class_bound(oh, s->kernel_h), cols = class_bound(ow, s->kernel_w);
    return BORDER_HEADER + oh + ow + 2 * (rows + cols) + rows * cols * w->out_channels;
}

/* Classes of the `n` output coordinates along one axis, with the taps [lo, hi) of each class's window inside the
 * input in range[2·class], range[2·class + 1]; returns the number of classes. */
static int64_t classify(int64_t n, int64_t stride, int64_t pad, int64_t size, int64_t k, int32_t *cls, int32_t *range,
                        int32_t *inner) {
    int64_t count = 0;
    *inner = -1;
    for (int64_t i = 0; i < n; i++) {
        const int64_t at = i * stride - pad;
        const int64_t lo = at >= 0 ? 0 : (-at < k ? -at : k), hi = size - at >= k ? k : (size - at > 0 ? size - at : 0);
        if (count == 0 || lo != range[2 * count - 2] || hi != range[2 * count - 1]) {
            range[2 * count] = (int32_t)lo;
            range[2 * count + 1] = (int32_t)hi;
            if (lo == 0 && hi == k) *inner = (int32_t)count;
            count++;
        }
        cls[i] = (int32_t)(count - 1);
    }
    return count;
}

size_t ck_bconv_border_bytes(const ck_conv_shape *s, const ck_bconv_weights *w) {
    int64_t oh, ow;
    if (s == NULL || w == NULL || ck_conv_output_size(s, &oh, &ow) != CK_OK) return 0;
    return (size_t)border_table_ints(s, w, oh, ow) * sizeof(int32_t);
}

void ck_bconv_border_fill(const ck_conv_shape *s, const ck_bconv_weights *w, void *table) {
    const int64_t kh = w->kernel_h, kw = w->kernel_w, o = w->out_channels;
    int64_t oh, ow;
    ck_conv_output_size(s, &oh, &ow);
    const int64_t row_bound = class_bound(oh, kh), col_bound = class_bound(ow, kw);
    int32_t *header = table, *row_class = header + BORDER_HEADER, *col_class = row_class + oh;
    int32_t *row_range = col_class + ow, *col_range = row_range + 2 * row_bound, *sums = col_range + 2 * col_bound;
    header[0] = (int32_t)classify(oh, s->stride_h, s->pad_h, s->height, kh, row_class, row_range, &header[2]);
    header[1] = (int32_t)classify(ow, s->stride_w, s->pad_w, s->width, kw, col_class, col_range, &header[3]);
    for (int64_t rc = 0; rc < header[0]; rc++) {
        for (int64_t cc = 0; cc < header[1]; cc++) {
            int32_t *sum = sums + (rc * header[1] + cc) * o;
            for (int64_t j = 0; j < o; j++) sum[j] = 0;
            for (int64_t a = 0; a < kh; a++) {
                const int row_in = a >= row_range[2 * rc] && a < row_range[2 * rc + 1];
                for (int64_t b = 0; b < kw; b++) {
                    if (row_in && b >= col_range[2 * cc] && b < col_range[2 * cc + 1]) continue;
                    const int32_t *tap = w->tap_sum + (a * kw + b) * o;
                    for (int64_t j = 0; j < o; j++) sum[j] += tap[j];
                }
            }
        }
    }
}

/* A view of a filled border table. */
static border_table border_view(const void *table, int64_t oh, int64_t ow, int64_t kh, int64_t kw) {
    const int32_t *header = table;
    border_table b = {header + BORDER_HEADER, header + BORDER_HEADER + oh, header[2], header[3], header[1], NULL};
    b.sums = b.col_class + ow + 2 * (class_bound(oh, kh) + class_bound(ow, kw));
    return b;
}

/* Word layout: a patch is kernel_h runs of kernel_w·ck_words(C) words, each contiguous in the input once the
 * input is zero-padded, so the micro-kernels read the (padded) input in place — no im2col. Rows [r0, r1) of
 * the padded input (batch·hp rows) are written to `padded`. */
static void pad_rows(const uint64_t *input, const ck_conv_shape *s, uint64_t *padded, int64_t r0, int64_t r1) {
    const int64_t cw = ck_words(s->channels), hp = s->height + 2 * s->pad_h, wp = s->width + 2 * s->pad_w;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t n = r / hp, y = r % hp - s->pad_h;
        uint64_t *dst = padded + r * wp * cw;
        if (y < 0 || y >= s->height) {
            memset(dst, 0, (size_t)(wp * cw) * sizeof(uint64_t));
            continue;
        }
        memset(dst, 0, (size_t)(s->pad_w * cw) * sizeof(uint64_t));
        memcpy(dst + s->pad_w * cw, input + (n * s->height + y) * s->width * cw,
               (size_t)(s->width * cw) * sizeof(uint64_t));
        memset(dst + (s->pad_w + s->width) * cw, 0, (size_t)(s->pad_w * cw) * sizeof(uint64_t));
    }
}

#if defined(__x86_64__)
#include "popcount_avx512.h"

/* transform_block on the AVX-512 path, 16 channels per register (the transform of transform.h, every part applied
 * as there), the sign bits from one compare mask per chunk. Used where the per-pixel cost of the generic loops
 * would exceed the popcount work of small layers. */
static inline __attribute__((always_inline, target("avx512f"))) void
transform_chunks(const int chunks, const ck_bconv_weights *w, const ck_output_transform *t, const float *prescale,
                 int64_t oh, int64_t ow, const ck_conv_shape *s, int64_t p0, int64_t pixels, int64_t o0, int64_t nc,
                 int32_t *dot, int64_t ldd) {
    const int64_t o = w->out_channels, ow_words = ck_words(o);
    ck_transform_avx512 tf;
    ck_transform_avx512_init(&tf, chunks, prescale, t->scale, t->bias, o0, nc);
    const ck_floors_avx512 floors = ck_floors_avx512_of(t->flags);
    const int want_float = t->out != NULL || t->out_bits != NULL;
    int64_t oy = (p0 / ow) % oh, ox = p0 % ow;
    for (int64_t i = 0; i < pixels; i++) {
        const int64_t p = p0 + i;
        int32_t *acc = dot + i * ldd;
        correct_border(w, s, oy, ox, o0, nc, acc);
        if (++ox == ow) {
            ox = 0;
            oy = oy + 1 == oh ? 0 : oy + 1;
        }
        if (t->out_int != NULL) memcpy(t->out_int + p * o + o0, acc, (size_t)nc * sizeof(int32_t));
        if (!want_float) continue;
        uint64_t bits = 0;
        for (int k = 0; k < chunks; k++) {
            const int64_t e = p * o + o0 + 16 * k; /* element (pixel, first channel of chunk) */
            const __m512 x = _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(tf.mask[k], acc + 16 * k));
            const __m512 y = ck_transform_avx512_apply(CK_PARTS_ALL, &tf, k, floors, x, t->residual, e);
            if (t->out != NULL) _mm512_mask_storeu_ps(t->out + e, tf.mask[k], y);
            bits |= (uint64_t)ck_transform_avx512_signs(&tf, k, y) << (16 * k);
        }
        if (t->out_bits != NULL) t->out_bits[p * ow_words + o0 / 64] = bits;
    }
}

/* transform_block with AVX-512 intrinsics: the same operations in the same order, 16 channels per register
 * (a constant count per instance, so everything stays in registers), the sign bits from compare masks. */
__attribute__((target("avx512f"))) static void
transform_block_avx512(const ck_bconv_weights *w, const ck_output_transform *t, const float *prescale, int64_t oh,
                       int64_t ow, const ck_conv_shape *s, int64_t p0, int64_t pixels, int64_t o0, int64_t nc,
                       int32_t *dot, int64_t ldd) {
    switch ((nc + 15) / 16) {
    case 1: transform_chunks(1, w, t, prescale, oh, ow, s, p0, pixels, o0, nc, dot, ldd); break;
    case 2: transform_chunks(2, w, t, prescale, oh, ow, s, p0, pixels, o0, nc, dot, ldd); break;
    case 3: transform_chunks(3, w, t, prescale, oh, ow, s, p0, pixels, o0, nc, dot, ldd); break;
    default: transform_chunks(4, w, t, prescale, oh, ow, s, p0, pixels, o0, nc, dot, ldd); break;
    }
}

/* Largest patch, in words, the fused kernel below takes in one pass: a 16-column weight panel of that many
 * words (16 KiB) stays in L1. Longer patches go through ck_bgemm_dot_block, which splits them. */
enum { FUSED_MAX_WORDS = 128 };

/* Popcounts and output transform fused (AVX-512): for each tile of CK_AVX512_MR output pixels, the popcounts of
 * every 16-channel panel of the block come back in registers and are corrected, transformed and stored from
 * there — no round trip through a dot-product tile, and the output bits of a pixel leave as one word. The
 * transform is transform_chunks' (transform.h, every part applied), so both give the same floats. */
static inline __attribute__((always_inline, target("avx512f,avx512vpopcntdq"))) void
fused_chunks(const int chunks, const int32_t *rule, const ck_bconv_weights *w, const ck_output_transform *t,
             const float *prescale, const border_table *border, int64_t oh, int64_t ow, const patch_rows_at *at,
             const ck_row_segments *seg, int64_t p0, int64_t pixels, int64_t o0, int64_t nc, int32_t k) {
    enum { MR = CK_AVX512_MR };
    const int64_t o = w->out_channels, ow_words = ck_words(o), panel_words = w->gemm.kw * CK_NR;
    ck_transform_avx512 tf;
    ck_transform_avx512_init(&tf, chunks, prescale, t->scale, t->bias, o0, nc);
    const ck_floors_avx512 floors = ck_floors_avx512_of(t->flags);
    __m512i flip[CHANNEL_BLOCK / 16], threshold[CHANNEL_BLOCK / 16];
    for (int j = 0; rule != NULL && j < chunks; j++) {
        flip[j] = _mm512_maskz_loadu_epi32(tf.mask[j], rule + o0 + 16 * j);
        threshold[j] = _mm512_maskz_loadu_epi32(tf.mask[j], rule + o + o0 + 16 * j);
    }
    const __m512i kv = _mm512_set1_epi32(k);
    const int want_float = t->out != NULL || t->out_bits != NULL;
    pixel_cursor cursor = pixel_cursor_at(at, oh, ow, p0);
    for (int64_t i0 = 0; i0 < pixels; i0 += MR) {
        const int height = pixels - i0 < MR ? (int)(pixels - i0) : MR;
        /* Rows past the end repeat the last row: valid memory, results dropped. */
        const uint64_t *a[MR];
        const int32_t *correction[MR]; /* tap sums of the pixel's padded taps (at channel o0), NULL inside */
        for (int i = 0; i < MR; i++) {
            if (i >= height) {
                a[i] = a[height - 1];
                continue;
            }
            a[i] = pixel_cursor_row(&cursor);
            const int32_t rc = border->row_class[cursor.oy], cc = border->col_class[cursor.ox];
            correction[i] = rc == border->inner_row && cc == border->inner_col
                                ? NULL
                                : border->sums + (rc * border->col_classes + cc) * o + o0;
            pixel_cursor_next(&cursor);
        }
        uint64_t bits[MR] = {0};
        for (int j = 0; j < chunks; j++) {
            __m512i x[MR];
            ck_popcount_rows_avx512(MR, seg, a, w->gemm.data + (o0 / CK_NR + j) * panel_words, x);
            /* Unrolled, so that x[i] and bits[i] stay in registers. */
#pragma clang loop unroll(full)
            for (int i = 0; i < MR; i++) {
                if (i >= height) continue;
                const int64_t e = (p0 + i0 + i) * o + o0 + 16 * j; /* element (pixel, first channel of chunk) */
                __m512i acc = _mm512_sub_epi32(kv, _mm512_slli_epi32(x[i], 1));
                if (correction[i] != NULL)
                    acc = _mm512_sub_epi32(acc, _mm512_maskz_loadu_epi32(tf.mask[j], correction[i] + 16 * j));
                if (rule != NULL) {
                    bits[i] |= (uint64_t)_mm512_mask_cmplt_epi32_mask(tf.mask[j], _mm512_xor_si512(acc, flip[j]),
                                                                      threshold[j]) << (16 * j);
                    continue;
                }
                if (t->out_int != NULL) _mm512_mask_storeu_epi32(t->out_int + e, tf.mask[j], acc);
                if (!want_float) continue;
                const __m512 y =
                    ck_transform_avx512_apply(CK_PARTS_ALL, &tf, j, floors, _mm512_cvtepi32_ps(acc), t->residual, e);
                if (t->out != NULL) _mm512_mask_storeu_ps(t->out + e, tf.mask[j], y);
                bits[i] |= (uint64_t)ck_transform_avx512_signs(&tf, j, y) << (16 * j);
            }
        }
        if (t->out_bits != NULL)
#pragma clang loop unroll(full)
            for (int i = 0; i < MR; i++)
                if (i < height) t->out_bits[(p0 + i0 + i) * ow_words + o0 / 64] = bits[i];
    }
}

/* Output pixels [p0, p0 + pixels) (patch rows where `at` says), channels [o0, o0 + nc): fused_chunks with the
 * number of 16-channel panels a constant in each instance. With a sign rule (only sign bits written) the bits come
 * from integer comparisons instead of the float transform. */
__attribute__((target("avx512f,avx512vpopcntdq"))) static void
fused_block_avx512(const ck_bconv_weights *w, const ck_output_transform *t, const float *prescale,
                   const int32_t *rule, const border_table *border, int64_t oh, int64_t ow, const patch_rows_at *at,
                   const ck_row_segments *seg, int64_t p0, int64_t pixels, int64_t o0, int64_t nc, int32_t k) {
#define FUSED(chunks, rule) fused_chunks(chunks, rule, w, t, prescale, border, oh, ow, at, seg, p0, pixels, o0, nc, k)
    const int chunks = (int)((nc + 15) / 16);
    if (rule != NULL) {
        switch (chunks) {
        case 1: FUSED(1, rule); break;
        case 2: FUSED(2, rule); break;
        case 3: FUSED(3, rule); break;
        default: FUSED(4, rule); break;
        }
    } else {
        switch (chunks) {
        case 1: FUSED(1, NULL); break;
        case 2: FUSED(2, NULL); break;
        case 3: FUSED(3, NULL); break;
        default: FUSED(4, NULL); break;
        }
    }
#undef FUSED
}
#endif

/* Bit layout, first step: each zero-padded input row as one compact bit string, pixel x holding bits
 * [x·C, (x+1)·C). Rows [r0, r1) of batch·hp; each row takes `stream_words(s)` words. */
static int64_t stream_words(const ck_conv_shape *s) {
    return ck_words((s->width + 2 * s->pad_w) * s->channels) + 1; /* + 1: extraction may read one word ahead */
}

static void stream_rows(const uint64_t *input, const ck_conv_shape *s, uint64_t *streams, int64_t r0, int64_t r1) {
    const int64_t c = s->channels, cw = ck_words(c), hp = s->height + 2 * s->pad_h, sw = stream_words(s);
    for (int64_t r = r0; r < r1; r++) {
        const int64_t n = r / hp, y = r % hp - s->pad_h;
        uint64_t *dst = streams + r * sw;
        memset(dst, 0, (size_t)sw * sizeof(uint64_t));
        if (y < 0 || y >= s->height) continue;
        const uint64_t *line = input + (n * s->height + y) * s->width * cw;
        if (cw > 1) {
            for (int64_t x = 0; x < s->width; x++) put_bits(dst, (x + s->pad_w) * c, line + x * cw, c);
            continue;
        }
        /* One word per pixel (C < 64): bits gather in a register and leave as whole words. */
        const uint64_t keep = low_mask(c);
        uint64_t *d = dst + ((s->pad_w * c) >> 6), word = 0;
        int64_t fill = (s->pad_w * c) & 63; /* bits of `word` already placed (the ones below are padding) */
        for (int64_t x = 0; x < s->width; x++) {
            const uint64_t v = line[x] & keep;
            word |= v << fill;
            fill += c;
            if (fill >= 64) {
                *d++ = word;
                fill -= 64;
                word = fill > 0 ? v >> (c - fill) : 0; /* the bits of v that did not fit */
            }
        }
        if (fill > 0) *d = word;
    }
}

/* `bits` bits of `src` starting at bit `offset`, ORed into `dst` at bit `at`. */
static inline void copy_bits(uint64_t *dst, int64_t at, const uint64_t *src, int64_t offset, int64_t bits) {
    for (int64_t done = 0; done < bits; done += 64) {
        const int64_t o = offset + done, shift = o & 63;
        const uint64_t *w = src + (o >> 6);
        uint64_t v = w[0] >> shift;
        if (shift != 0) v |= w[1] << (64 - shift);
        put_bits(dst, at + done, &v, bits - done < 64 ? bits - done : 64);
    }
}

/* Gathered layouts, second step: the patch of each output pixel of output rows [r0, r1) (of batch·oh). Kernel
 * row a is kernel_w·C consecutive bits of padded input row oy·stride + a: with segments one shifted copy into
 * whole words, in the tight layout ORed in at bit a·kw·C. */
static void gather_patch_rows(const uint64_t *streams, const ck_conv_shape *s, const ck_bconv_weights *w,
                              int64_t oh, int64_t ow, uint64_t *patches, int64_t r0, int64_t r1) {
    const int64_t words = w->patch_words, c = s->channels, kh = s->kernel_h, kw = s->kernel_w;
    const int64_t hp = s->height + 2 * s->pad_h, sw = stream_words(s), run = kw * c;
    const int segments = w->row_bits % 64 == 0;
    const int64_t run_words = ck_words(run);
    const uint64_t last_mask = low_mask(run - (run_words - 1) * 64);
    for (int64_t r = r0; r < r1; r++) {
        const int64_t n = r / oh, oy = r % oh;
        uint64_t *first = patches + r * ow * words;
        if (!segments) {
            memset(first, 0, (size_t)(ow * words) * sizeof(uint64_t));
            for (int64_t ox = 0; ox < ow; ox++)
                for (int64_t a = 0; a < kh; a++)
                    copy_bits(first + ox * words, a * run, streams + (n * hp + oy * s->stride_h + a) * sw,
                              ox * s->stride_w * c, run);
            continue;
        }
        /* Segments: kernel row by kernel row, one (or a few) shifted words per output pixel. */
        const int64_t step = s->stride_w * c;
        for (int64_t a = 0; a < kh; a++) {
            const uint64_t *row = streams + (n * hp + oy * s->stride_h + a) * sw;
            uint64_t *dst = first + a * run_words;
            /* Word i of the run is bits [offset + 64·i, offset + 64·i + 64) of the row, without a branch on
             * shift = 0: (next << 1) << (63 − shift) is 0 then, where next << (64 − shift) would be undefined. */
            if (run_words == 1) {
                for (int64_t ox = 0, offset = 0; ox < ow; ox++, offset += step, dst += words) {
                    const uint64_t *src = row + (offset >> 6);
                    const int64_t shift = offset & 63;
                    dst[0] = ((src[0] >> shift) | ((src[1] << 1) << (63 - shift))) & last_mask;
                }
                continue;
            }
            for (int64_t ox = 0, offset = 0; ox < ow; ox++, offset += step, dst += words) {
                const uint64_t *src = row + (offset >> 6);
                const int64_t shift = offset & 63;
                for (int64_t i = 0; i < run_words; i++)
                    dst[i] = (src[i] >> shift) | ((src[i + 1] << 1) << (63 - shift));
                dst[run_words - 1] &= last_mask;
            }
        }
    }
}

/* Where tap b of a kernel row lands in word i of its run (C < 64, one input word per pixel): the input word is
 * shifted left by `shift` (right by −shift if negative); 0 if the tap has no bit in that word. */
static inline int tap_in_word(int64_t c, int64_t b, int64_t i, int64_t *shift) {
    *shift = b * c - 64 * i;
    return *shift < 64 && *shift + c > 0;
}

/* The row words (see by_row_words) of padded input rows [r0, r1) of batch·hp. Taps in the padding contribute zeros. */
static void gather_row_words(const uint64_t *input, const ck_conv_shape *s, const ck_bconv_weights *w, int64_t ow,
                             uint64_t *out, int64_t r0, int64_t r1) {
    const int64_t c = s->channels, kw = s->kernel_w, run_words = w->row_bits / 64, hp = s->height + 2 * s->pad_h;
    const uint64_t keep = low_mask(c);
    for (int64_t r = r0; r < r1; r++) {
        const int64_t n = r / hp, y = r % hp - s->pad_h;
        uint64_t *dst = out + r * run_words * ow;
        if (y < 0 || y >= s->height) {
            memset(dst, 0, (size_t)(run_words * ow) * sizeof(uint64_t));
            continue;
        }
        const uint64_t *line = input + (n * s->height + y) * s->width;
        for (int64_t i = 0; i < run_words; i++, dst += ow) {
            for (int64_t ox = 0; ox < ow; ox++) {
                uint64_t word = 0;
                for (int64_t b = 0; b < kw; b++) {
                    const int64_t ix = ox * s->stride_w - s->pad_w + b;
                    int64_t shift;
                    if (!tap_in_word(c, b, i, &shift) || ix < 0 || ix >= s->width) continue;
                    const uint64_t v = line[ix] & keep;
                    word |= shift >= 0 ? v << shift : v >> -shift;
                }
                dst[ox] = word;
            }
        }
    }
}

/* Words of the zero-padded copy of one input row that gather_row_words_avx512 reads: every word a block of 8
 * output columns reaches (taps and stride included) lies inside it. */
static int64_t line_words(const ck_conv_shape *s, int64_t ow) { return (ow + 8) * s->stride_w + s->kernel_w + 16; }

#if defined(__x86_64__)
/* gather_row_words with AVX-512: each input row is first copied, masked to its C bits, into a zero-padded line
 * (`line`, line_words(s, ow) words), so that every tap of 8 consecutive output columns is one unmasked vector load
 * — contiguous for stride 1, the even words of 16 for stride 2, a hardware gather otherwise — a shift and an OR.
 * Same words as gather_row_words. */
__attribute__((target("avx512f"))) static void
gather_row_words_avx512(const uint64_t *input, const ck_conv_shape *s, const ck_bconv_weights *w, int64_t ow,
                        uint64_t *out, uint64_t *line, int64_t r0, int64_t r1) {
    const int64_t c = s->channels, kw = s->kernel_w, run_words = w->row_bits / 64, hp = s->height + 2 * s->pad_h;
    const int64_t sw = s->stride_w, width = s->width;
    const __m512i keep = _mm512_set1_epi64((long long)low_mask(c));
    const __m512i even = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
    const __m512i columns = _mm512_mul_epu32(_mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7), _mm512_set1_epi64(sw));
    /* Only [pad_w, pad_w + width) is ever written: the rest stays zero, the padding. */
    memset(line, 0, (size_t)line_words(s, ow) * sizeof(uint64_t));
    uint64_t *pixels = line + s->pad_w;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t n = r / hp, y = r % hp - s->pad_h;
        uint64_t *dst = out + r * run_words * ow;
        if (y < 0 || y >= s->height) {
            memset(dst, 0, (size_t)(run_words * ow) * sizeof(uint64_t));
            continue;
        }
        const uint64_t *src = input + (n * s->height + y) * width;
        for (int64_t x = 0; x < width; x += 8) {
            const __mmask8 lanes = width - x >= 8 ? 0xff : (__mmask8)((1u << (width - x)) - 1);
            const __m512i v = _mm512_maskz_loadu_epi64(lanes, src + x);
            _mm512_mask_storeu_epi64(pixels + x, lanes, _mm512_and_si512(v, keep));
        }
        for (int64_t i = 0; i < run_words; i++, dst += ow) {
            for (int64_t ox0 = 0; ox0 < ow; ox0 += 8) {
                const uint64_t *first = line + ox0 * sw; /* tap 0 of column ox0 */
                __m512i word = _mm512_setzero_si512();
                for (int64_t b = 0; b < kw; b++) {
                    int64_t shift;
                    if (!tap_in_word(c, b, i, &shift)) continue;
                    __m512i v;
                    if (sw == 1)
                        v = _mm512_loadu_si512((const void *)(first + b));
                    else if (sw == 2)
                        v = _mm512_permutex2var_epi64(_mm512_loadu_si512((const void *)(first + b)), even,
                                                      _mm512_loadu_si512((const void *)(first + b + 8)));
                    else
                        v = _mm512_i64gather_epi64(columns, (const void *)(first + b), 8);
                    v = shift >= 0 ? _mm512_sll_epi64(v, _mm_cvtsi64_si128(shift))
                                   : _mm512_srl_epi64(v, _mm_cvtsi64_si128(-shift));
                    word = _mm512_or_si512(word, v);
                }
                const __mmask8 lanes = ow - ox0 >= 8 ? 0xff : (__mmask8)((1u << (ow - ox0)) - 1);
                _mm512_mask_storeu_epi64(dst + ox0, lanes, word);
            }
        }
    }
}
#endif

/* Workspace layout: [source rows: padded input or patches][per thread: dot tile, row pointers]. */
static size_t source_words(const ck_conv_shape *s, const ck_bconv_weights *w, int64_t oh, int64_t ow) {
    if (by_row_words(w)) return (size_t)(s->batch * (s->height + 2 * s->pad_h) * (w->row_bits / 64) * ow);
    if (gathered(w))
        return (size_t)(s->batch * oh * ow * w->patch_words +
                        s->batch * (s->height + 2 * s->pad_h) * stream_words(s));
    if (s->pad_h == 0 && s->pad_w == 0) return 0;
    return (size_t)(s->batch * (s->height + 2 * s->pad_h) * (s->width + 2 * s->pad_w) * ck_words(s->channels));
}

enum { THREAD_BYTES = PIXEL_BLOCK * CHANNEL_BLOCK * sizeof(int32_t) + PIXEL_BLOCK * sizeof(uint64_t *) };

/* Workspace bytes before the per-thread parts: source rows, then the border table, each from a 64-byte boundary. */
static size_t shared_bytes(const ck_conv_shape *s, const ck_bconv_weights *w, int64_t oh, int64_t ow) {
    return (source_words(s, w, oh, ow) * sizeof(uint64_t) + 63) / 64 * 64 +
           ((size_t)border_table_ints(s, w, oh, ow) * sizeof(int32_t) + 63) / 64 * 64;
}

/* Per-thread workspace: THREAD_BYTES, then (row words only) the padded line of gather_row_words_avx512. */
static size_t thread_bytes(const ck_conv_shape *s, const ck_bconv_weights *w, int64_t ow) {
    return THREAD_BYTES + (by_row_words(w) ? ((size_t)line_words(s, ow) * sizeof(uint64_t) + 63) / 64 * 64 : 0);
}

size_t ck_bconv2d_workspace_bytes(const ck_conv_shape *s, const ck_bconv_weights *w, int threads) {
    int64_t oh, ow;
    if (s == NULL || w == NULL || threads < 1 || ck_conv_output_size(s, &oh, &ow) != CK_OK) return 0;
    return shared_bytes(s, w, oh, ow) + (size_t)threads * thread_bytes(s, w, ow);
}

/* Even split of [0, total) among `parts`: the range of part `i`. */
static inline void split(int64_t total, int parts, int i, int64_t *begin, int64_t *end) {
    *begin = total * i / parts;
    *end = total * (i + 1) / parts;
}

/* The float transform's sign for one channel at integer acc, as transform_block computes it (every part applied,
 * the residual an added +0). */
static int transform_sign(int32_t acc, float pre, float scale, float bias, float floor_before, float floor_after) {
    return ck_transform(CK_PARTS_ALL, (float)acc, pre, floor_before, scale, bias, 0.0f, floor_after) < 0.0f;
}

ck_status ck_bconv_sign_rule(const ck_bconv_weights *w, const ck_output_transform *t, const float *prescale,
                             int32_t *rule) {
    const int64_t o = w->out_channels, k = w->kernel_h * w->kernel_w * w->channels;
    if (k > ((int64_t)1 << 16)) return CK_ERR_UNSUPPORTED; /* evaluating 2k + 1 values per channel is the cost */
    const float floor_before = ck_relu_floor(t->flags, CK_RELU_BEFORE);
    const float floor_after = ck_relu_floor(t->flags, CK_RELU_AFTER);
    for (int64_t j = 0; j < o; j++) {
        const float pre = prescale != NULL ? prescale[j] : 1.0f, scale = t->scale != NULL ? t->scale[j] : 1.0f;
        const float bias = t->bias != NULL ? t->bias[j] : 0.0f;
        const int first = transform_sign((int32_t)-k, pre, scale, bias, floor_before, floor_after);
        int previous = first, changes = 0;
        int32_t at = 0; /* the first acc with the other sign */
        for (int64_t acc = -k + 1; acc <= k; acc++) {
            const int sign = transform_sign((int32_t)acc, pre, scale, bias, floor_before, floor_after);
            if (sign == previous) continue;
            if (++changes > 1) return CK_ERR_UNSUPPORTED;
            at = (int32_t)acc;
            previous = sign;
        }
        if (changes == 0) { /* always negative: acc < k + 1; never: acc < −k */
            rule[j] = 0;
            rule[o + j] = first ? (int32_t)(k + 1) : (int32_t)-k;
        } else if (first) { /* negative below `at` */
            rule[j] = 0;
            rule[o + j] = at;
        } else { /* negative from `at` on: acc ≥ at ⟺ ~acc = −acc − 1 < −at */
            rule[j] = -1;
            rule[o + j] = -at;
        }
    }
    return CK_OK;
}

ck_status ck_bconv2d_run(const uint64_t *input, const ck_conv_shape *s, const ck_bconv_weights *w,
                         const ck_output_transform *t, const float *prescale, const ck_bconv_prepared *prepared,
                         int threads, void *workspace) {
    const ck_kernels *kern = ck_active_kernels();
    /* The sign rule stands for the float transform only where nothing but sign bits is written. */
    const int32_t *rule = prepared != NULL && t->out == NULL && t->out_int == NULL && t->residual == NULL &&
                                  t->out_bits != NULL
                              ? prepared->sign_rule
                              : NULL;
    int64_t oh, ow;
    ck_conv_output_size(s, &oh, &ow);
    const int64_t pixels = s->batch * oh * ow, cw = ck_words(s->channels), o = w->out_channels;
    const int32_t k_all = (int32_t)(s->kernel_h * s->kernel_w * s->channels);
    uint64_t *source = workspace;
    char *per_thread = (char *)workspace + shared_bytes(s, w, oh, ow);
    const int64_t hp = s->height + 2 * s->pad_h, wp = s->width + 2 * s->pad_w;
    const int direct = !gathered(w) && s->pad_h == 0 && s->pad_w == 0;
    const uint64_t *base = direct ? input : source;
    const ck_row_segments seg = by_row_words(w)  ? (ck_row_segments){w->patch_words, 1, ow}
                                : gathered(w) ? (ck_row_segments){1, w->patch_words, 0}
                                              : (ck_row_segments){s->kernel_h, s->kernel_w * cw, wp * cw};
    patch_rows_at at = {base, 0, 0, 0};
    if (by_row_words(w)) {
        const int64_t run_words = w->row_bits / 64;
        at = (patch_rows_at){base, hp * run_words * ow, s->stride_h * run_words * ow, 1};
    } else if (gathered(w)) {
        at = (patch_rows_at){base, oh * ow * w->patch_words, ow * w->patch_words, w->patch_words};
    } else {
        const int64_t rows_in = direct ? s->height : hp, cols_in = direct ? s->width : wp;
        at = (patch_rows_at){base, rows_in * cols_in * cw, s->stride_h * cols_in * cw, s->stride_w * cw};
    }
    const int64_t pixel_blocks = (pixels + PIXEL_BLOCK - 1) / PIXEL_BLOCK;
    const int64_t channel_blocks = (o + CHANNEL_BLOCK - 1) / CHANNEL_BLOCK;
    const int64_t tasks = pixel_blocks * channel_blocks;
    _Atomic int64_t next_task = 0;
#if defined(__x86_64__)
    /* The fused AVX-512 kernel takes patches of up to FUSED_MAX_WORDS words whole, and border tap sums by class. */
    const int fused = kern->isa == CK_ISA_AVX512 && seg.count * seg.words <= FUSED_MAX_WORDS;
    border_table border = {0};
    if (fused) {
        const void *table = prepared != NULL ? prepared->border : NULL;
        if (table == NULL) {
            void *space = (char *)workspace + (source_words(s, w, oh, ow) * sizeof(uint64_t) + 63) / 64 * 64;
            ck_bconv_border_fill(s, w, space);
            table = space;
        }
        border = border_view(table, oh, ow, s->kernel_h, s->kernel_w);
    }
#endif

    /* Phase 1 fills the source rows (padded input or patches); phase 2 hands out (pixel block, channel block)
     * tasks from a shared counter: popcount GEMM and output transform. One thread runs both inline. */
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        /* The team may be smaller than asked (a nested region runs with one thread). */
        const int me = threads > 1 ? omp_get_thread_num() : 0, team = threads > 1 ? omp_get_num_threads() : 1;
        int64_t r0, r1;
        char *mine = per_thread + (size_t)me * thread_bytes(s, w, ow);
        if (by_row_words(w)) {
            split(s->batch * hp, team, me, &r0, &r1);
#if defined(__x86_64__)
            if (kern->isa == CK_ISA_AVX512)
                gather_row_words_avx512(input, s, w, ow, source, (uint64_t *)(mine + THREAD_BYTES), r0, r1);
            else
#endif
                gather_row_words(input, s, w, ow, source, r0, r1);
        } else if (gathered(w)) {
            uint64_t *streams = source + pixels * w->patch_words;
            split(s->batch * hp, team, me, &r0, &r1);
            stream_rows(input, s, streams, r0, r1);
#pragma omp barrier
            split(s->batch * oh, team, me, &r0, &r1);
            gather_patch_rows(streams, s, w, oh, ow, source, r0, r1);
        } else if (!direct) {
            split(s->batch * hp, team, me, &r0, &r1);
            pad_rows(input, s, source, r0, r1);
        }
#pragma omp barrier
        int32_t *dot = (int32_t *)mine;
        const uint64_t **rows = (const uint64_t **)(dot + PIXEL_BLOCK * CHANNEL_BLOCK);
        for (int64_t task = atomic_fetch_add(&next_task, 1); task < tasks; task = atomic_fetch_add(&next_task, 1)) {
            const int64_t p0 = (task / channel_blocks) * PIXEL_BLOCK, o0 = (task % channel_blocks) * CHANNEL_BLOCK;
            const int64_t mb = pixels - p0 < PIXEL_BLOCK ? pixels - p0 : PIXEL_BLOCK;
            const int64_t nb = o - o0 < CHANNEL_BLOCK ? o - o0 : CHANNEL_BLOCK;
#if defined(__x86_64__)
            if (fused) {
                fused_block_avx512(w, t, prescale, rule, &border, oh, ow, &at, &seg, p0, mb, o0, nb, k_all);
                continue;
            }
#endif
            patch_row_pointers(&at, oh, ow, p0, mb, rows);
            ck_bgemm_dot_block(kern, rows, mb, &w->gemm, o0, nb, k_all, dot, CHANNEL_BLOCK, &seg);
#if defined(__x86_64__)
            if (kern->isa == CK_ISA_AVX512)
                transform_block_avx512(w, t, prescale, oh, ow, s, p0, mb, o0, nb, dot, CHANNEL_BLOCK);
            else
#endif
                transform_block(w, t, prescale, oh, ow, s, p0, mb, o0, nb, dot, CHANNEL_BLOCK);
        }
    }
    return CK_OK;
}

ck_status ck_bconv2d_check(const uint64_t *input, const ck_conv_shape *s, const ck_bconv_weights *w,
                           const ck_output_transform *t) {
    if (input == NULL || s == NULL || w == NULL || t == NULL) return CK_ERR_NULL_POINTER;
    if (t->out_int == NULL && t->out == NULL && t->out_bits == NULL) return CK_ERR_NULL_POINTER;
    ck_status status = ck_conv_output_size(s, NULL, NULL);
    if (status != CK_OK) return status;
    if (s->channels != w->channels || s->kernel_h != w->kernel_h || s->kernel_w != w->kernel_w)
        return CK_ERR_SHAPE_MISMATCH;
    if (t->flags & ~(CK_RELU_BEFORE | CK_RELU_AFTER)) return CK_ERR_INVALID_SIZE;
    return CK_OK;
}

ck_status ck_bconv2d(const uint64_t *input, const ck_conv_shape *s, const ck_bconv_weights *w,
                     const ck_output_transform *t) {
    ck_status status = ck_bconv2d_check(input, s, w, t);
    if (status != CK_OK) return status;
    const int threads = ck_get_num_threads();
    void *workspace = malloc(ck_bconv2d_workspace_bytes(s, w, threads));
    if (workspace == NULL) return CK_ERR_OUT_OF_MEMORY;
    status = ck_bconv2d_run(input, s, w, t, NULL, NULL, threads, workspace);
    free(workspace);
    return status;
}

ck_status ck_bmaxpool2d(const uint64_t *input, const ck_conv_shape *s, uint64_t *out) {
    if (input == NULL || s == NULL || out == NULL) return CK_ERR_NULL_POINTER;
    int64_t oh, ow;
    ck_status status = ck_conv_output_size(s, &oh, &ow);
    if (status != CK_OK) return status;
    /* PyTorch requires pad ≤ kernel/2, so every window holds at least one real pixel. */
    if (2 * s->pad_h > s->kernel_h || 2 * s->pad_w > s->kernel_w) return CK_ERR_SHAPE_MISMATCH;
    ck_bmaxpool2d_run(input, s, out, ck_get_num_threads());
    return CK_OK;
}

void ck_bmaxpool2d_run(const uint64_t *input, const ck_conv_shape *s, uint64_t *out, int threads) {
    int64_t oh, ow;
    ck_conv_output_size(s, &oh, &ow);
    const int64_t cw = ck_words(s->channels), pixels = s->batch * oh * ow;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int64_t p = 0; p < pixels; p++) {
        const int64_t n = p / (oh * ow), oy = (p / ow) % oh, ox = p % ow;
        uint64_t *dst = out + p * cw;
        for (int64_t i = 0; i < cw; i++) dst[i] = ~(uint64_t)0;
        for (int64_t a = 0; a < s->kernel_h; a++) {
            const int64_t iy = oy * s->stride_h - s->pad_h + a;
            if (iy < 0 || iy >= s->height) continue;
            for (int64_t b = 0; b < s->kernel_w; b++) {
                const int64_t ix = ox * s->stride_w - s->pad_w + b;
                if (ix < 0 || ix >= s->width) continue;
                const uint64_t *src = input + ((n * s->height + iy) * s->width + ix) * cw;
                for (int64_t i = 0; i < cw; i++) dst[i] &= src[i];
            }
        }
        dst[cw - 1] &= low_mask(s->channels - (cw - 1) * 64);
    }
}
