/* engine.c — runs a packed network program: a validated list of kernel steps over buffers planned once.
 *
 * Small binary networks are limited by memory traffic, not popcount: a batch of 256 CIFAR images streamed
 * through RAM layer by layer would spend its time moving activations. So with at least as many images as
 * threads, each thread runs whole images through every step with its own buffers (an image's activations
 * stay in L1/L2 from layer to layer); with fewer images, images run one after another and the threads
 * split each layer (or one thread runs it all, where the program measures that to be faster: split_policy).
 *
 * Each step repeats the float operations of the training op it stands for, in the same order (the same kernel
 * where there is one: ck_conv2d_forward_f32's plan for float convolutions of many channels; mirrored loops for
 * the pools, whose tests compare them with the training kernels), so a packed network computes the training
 * graph's evaluation bit for bit. */
#include "internal.h"
#include "transform.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { MAX_BUFFERS = 64, OUT_BLOCK = 64, CHUNK = 64, SPLIT_WINDOW = 4 };

/* Floats (or words) of one buffer at most: index arithmetic and buffer offsets then never overflow. */
#define MAX_ELEMENTS ((int64_t)1 << 40)

/* What is known of a buffer: kind (float or bits) and per-image shape. */
typedef struct {
    int defined, bits;
    int64_t h, w, c;
} buffer_info;

struct ck_program {
    int count;
    ck_step *steps;
    float **transposed;       /* CONV_F32 of few input channels and LINEAR: weights with the outputs innermost */
    ck_conv_rows **conv_rows; /* CONV_F32 of more input channels: ck_conv2d_forward_f32's plan */
    int32_t **sign_rules; /* BCONV steps that write only sign bits: ck_bconv_sign_rule's comparisons, or NULL */
    void **borders;       /* BCONV steps: ck_bconv_border_fill's table */
    int buffers;
    buffer_info info[MAX_BUFFERS];
    size_t offset[MAX_BUFFERS]; /* byte offset of each buffer in a thread's memory (buffer 0: the image) */
    size_t buffer_bytes;         /* all buffers of one image */
    int64_t input_floats, output_floats;
    int result;
    int failed_step; /* the step check_steps stopped at (count if the result buffer is missing) */
    /* Plan for the current thread count: memory[i] holds thread i's buffers and workspace. */
    int planned_threads;
    size_t workspace_single, workspace_team;
    void **memory;
    /* CK_PROFILE_STEPS (see ckernels_engine.h): seconds per step summed over runs, [thread][step], for runs of
     * profile_batch images; printed to stderr when the batch size changes and when the program is destroyed. */
    int profiling;
    double *profile;
    int64_t profile_batch, profile_images;
    /* Fewer images than threads: split layers or not (split_policy); images run each way since the last profile. */
    int split_forced; /* CK_SPLIT_LAYERS: 0 or 1, else −1 (timed) */
    int64_t split_calls, split_retry, split_interval; /* calls so far; next retry of the other way, and the wait */
    int split_best;                                   /* the way chosen (−1 before the trials end) */
    double split_window[2][SPLIT_WINDOW]; /* wall seconds per image of recent calls (0: none), one thread / split */
    int split_next[2];
    int64_t split_used[2];
};

static int64_t elements(const buffer_info *b) { return b->bits ? b->h * b->w * ck_words(b->c) : b->h * b->w * b->c; }

static size_t round64(size_t bytes) { return (bytes + 63) / 64 * 64; }

/* A per-image tensor small enough for the engine's index arithmetic (each size already ≤ CK_MAX_DIM). */
static int fits(const buffer_info *b) { return b->h * b->w <= CK_MAX_DIM && b->h * b->w * b->c <= MAX_ELEMENTS; }

/* Steps with the output transform (prescale, floors, scale, bias, residual). */
static int has_transform(ck_step_kind kind) {
    return kind == CK_STEP_CONV_F32 || kind == CK_STEP_BCONV || kind == CK_STEP_AFFINE;
}

static int reads_bits(ck_step_kind kind) { return kind == CK_STEP_BCONV || kind == CK_STEP_BMAXPOOL; }

static int may_write_bits(ck_step_kind kind) {
    return has_transform(kind) || kind == CK_STEP_BMAXPOOL || kind == CK_STEP_MAXPOOL_F32 ||
           kind == CK_STEP_AVGPOOL_F32;
}

/* A float convolution with more input channels than a stem adds its products as ck_conv2d_forward_f32. */
static int conv_by_rows(const ck_step *st) {
    return st->kind == CK_STEP_CONV_F32 && st->shape.channels > CK_CONV_F32_DIRECT_CHANNELS;
}

/* Output shape of a step from its input shape; CK_OK or why the step is invalid. */
static ck_status step_output(const ck_step *st, buffer_info *out) {
    const ck_conv_shape *s = &st->shape;
    int64_t oh = 1, ow = 1;
    switch (st->kind) {
    case CK_STEP_CONV_F32:
    case CK_STEP_BCONV: {
        ck_status status = ck_conv_output_size(s, &oh, &ow);
        if (status != CK_OK) return status;
        *out = (buffer_info){1, 0, oh, ow, st->out_channels};
        return CK_OK;
    }
    case CK_STEP_BMAXPOOL:
    case CK_STEP_MAXPOOL_F32:
    case CK_STEP_AVGPOOL_F32: {
        ck_status status = ck_conv_output_size(s, &oh, &ow);
        if (status != CK_OK) return status;
        /* PyTorch's limit, which also keeps a real pixel in every window (so no max-pool output is −∞). */
        if (2 * s->pad_h > s->kernel_h || 2 * s->pad_w > s->kernel_w) return CK_ERR_SHAPE_MISMATCH;
        *out = (buffer_info){1, 0, oh, ow, s->channels};
        return CK_OK;
    }
    case CK_STEP_SHORTCUT:
        if (!ck_size_ok(s->stride_h) || s->stride_h != s->stride_w || st->out_channels < s->channels ||
            (st->out_channels - s->channels) % 2 != 0)
            return CK_ERR_SHAPE_MISMATCH;
        *out = (buffer_info){1, 0, (s->height + s->stride_h - 1) / s->stride_h,
                             (s->width + s->stride_w - 1) / s->stride_w, st->out_channels};
        return CK_OK;
    case CK_STEP_GLOBAL_AVGPOOL: *out = (buffer_info){1, 0, 1, 1, s->channels}; return CK_OK;
    case CK_STEP_LINEAR: *out = (buffer_info){1, 0, 1, 1, st->out_channels}; return CK_OK;
    case CK_STEP_AFFINE: *out = (buffer_info){1, 0, s->height, s->width, s->channels}; return CK_OK;
    }
    return CK_ERR_INVALID_SIZE;
}

static int same_shape(const buffer_info *a, const buffer_info *b) {
    return a->bits == b->bits && a->h == b->h && a->w == b->w && a->c == b->c;
}

/* A field the step's kind does not read is an error, not ignored: a packer that sets one meant something the
 * engine would not do. */
static int unused_field_set(const ck_step *st) {
    const ck_step_kind k = st->kind;
    const int transform = has_transform(k);
    return (st->flags != 0 && !transform) || (st->prescale != NULL && !transform) ||
           (st->scale != NULL && !transform && k != CK_STEP_GLOBAL_AVGPOOL) ||
           (st->bias != NULL && !transform && k != CK_STEP_GLOBAL_AVGPOOL && k != CK_STEP_LINEAR) ||
           (st->weights != NULL && k != CK_STEP_CONV_F32 && k != CK_STEP_LINEAR) ||
           (st->binary_weights != NULL && k != CK_STEP_BCONV) || (st->residual >= 0 && !transform) ||
           (st->output >= 0 && k == CK_STEP_BMAXPOOL) || (st->output_bits >= 0 && !may_write_bits(k));
}

static ck_status check_steps(ck_program *p) {
    for (int i = 0; i < p->count; i++) {
        p->failed_step = i;
        const ck_step *st = &p->steps[i];
        const ck_conv_shape *s = &st->shape;
        if ((unsigned)st->kind > CK_STEP_AFFINE || st->flags & ~(CK_RELU_BEFORE | CK_RELU_AFTER))
            return CK_ERR_INVALID_SIZE;
        if (unused_field_set(st)) return CK_ERR_SHAPE_MISMATCH;
        if (st->kind == CK_STEP_LINEAR) {
            if (!ck_size_ok(s->channels) || !ck_size_ok(st->out_channels)) return CK_ERR_INVALID_SIZE;
        } else if (s->batch != 1 || !ck_size_ok(s->height) || !ck_size_ok(s->width) || !ck_size_ok(s->channels)) {
            return CK_ERR_INVALID_SIZE;
        }
        if ((st->kind == CK_STEP_CONV_F32 || st->kind == CK_STEP_BCONV || st->kind == CK_STEP_LINEAR) &&
            !ck_size_ok(st->out_channels))
            return CK_ERR_INVALID_SIZE;
        if ((st->kind == CK_STEP_CONV_F32 || st->kind == CK_STEP_LINEAR) && st->weights == NULL)
            return CK_ERR_NULL_POINTER;
        if (st->kind == CK_STEP_BCONV) {
            int64_t o, c, kh, kw;
            ck_status status = ck_bconv_weights_dims(st->binary_weights, &o, &c, &kh, &kw);
            if (status != CK_OK) return status;
            if (o != st->out_channels || c != s->channels || kh != s->kernel_h || kw != s->kernel_w)
                return CK_ERR_SHAPE_MISMATCH;
        }
        const int ids[4] = {st->input, st->residual, st->output, st->output_bits};
        for (int j = 0; j < 4; j++)
            if (ids[j] < -1 || ids[j] >= MAX_BUFFERS) return CK_ERR_INVALID_SIZE;
        if (st->input < 0) return CK_ERR_SHAPE_MISMATCH;
        if (st->output == 0 || st->output_bits == 0) return CK_ERR_SHAPE_MISMATCH; /* buffer 0 is the input */
        if (st->output < 0 && st->output_bits < 0) return CK_ERR_NULL_POINTER;

        /* What the step reads must exist already, with the kind and shape it expects; LINEAR reads any float
         * buffer of `channels` floats (a flatten is free in NHWC). */
        buffer_info *in = &p->info[st->input];
        if (st->kind == CK_STEP_LINEAR) {
            if (st->input == 0 && !in->defined) *in = (buffer_info){1, 0, 1, 1, s->channels};
            if (!in->defined || in->bits || in->h * in->w * in->c != s->channels) return CK_ERR_SHAPE_MISMATCH;
        } else {
            const buffer_info want = {1, reads_bits(st->kind), s->height, s->width, s->channels};
            if (!fits(&want)) return CK_ERR_INVALID_SIZE;
            if (st->input == 0 && !in->defined) *in = want; /* the first reader of buffer 0 fixes the input shape */
            if (!in->defined || !same_shape(in, &want)) return CK_ERR_SHAPE_MISMATCH;
        }

        buffer_info out;
        ck_status status = step_output(st, &out);
        if (status != CK_OK) return status;
        if (!fits(&out)) return CK_ERR_INVALID_SIZE;
        if (st->residual >= 0 && (!p->info[st->residual].defined || !same_shape(&p->info[st->residual], &out)))
            return CK_ERR_SHAPE_MISMATCH;
        /* Outputs: a new buffer takes the step's shape; a reused one must already have it. */
        if (st->output >= 0) {
            if (st->output == st->input || st->output == st->residual) return CK_ERR_SHAPE_MISMATCH;
            buffer_info *b = &p->info[st->output];
            if (b->defined && !same_shape(b, &out)) return CK_ERR_SHAPE_MISMATCH;
            *b = out;
        }
        if (st->output_bits >= 0) {
            if (st->output_bits == st->input || st->output_bits == st->output) return CK_ERR_SHAPE_MISMATCH;
            buffer_info bits = out;
            bits.bits = 1;
            buffer_info *b = &p->info[st->output_bits];
            if (b->defined && !same_shape(b, &bits)) return CK_ERR_SHAPE_MISMATCH;
            *b = bits;
        }
        if (st->input + 1 > p->buffers) p->buffers = st->input + 1;
        for (int j = 1; j < 4; j++)
            if (ids[j] + 1 > p->buffers) p->buffers = ids[j] + 1;
    }
    p->failed_step = p->count - 1;
    const ck_step *last = &p->steps[p->count - 1];
    if (last->output < 0) return CK_ERR_SHAPE_MISMATCH;
    p->failed_step = -1;
    p->result = last->output;
    p->input_floats = elements(&p->info[0]);
    p->output_floats = elements(&p->info[p->result]);
    return CK_OK;
}

ck_status ck_program_create(const ck_step *steps, int count, ck_program **out) {
    return ck_program_create_checked(steps, count, out, NULL);
}

ck_status ck_program_create_checked(const ck_step *steps, int count, ck_program **out, int *failed_step) {
    if (failed_step != NULL) *failed_step = -1;
    if (out == NULL) return CK_ERR_NULL_POINTER;
    *out = NULL;
    if (steps == NULL) return CK_ERR_NULL_POINTER;
    if (count < 1 || count > 100000) return CK_ERR_INVALID_SIZE;
    ck_program *p = ck_alloc(sizeof *p);
    if (p == NULL) return CK_ERR_OUT_OF_MEMORY;
    p->count = count;
    p->steps = ck_alloc((size_t)count * sizeof(ck_step));
    p->transposed = ck_alloc((size_t)count * sizeof(float *));
    p->conv_rows = ck_alloc((size_t)count * sizeof(ck_conv_rows *));
    p->sign_rules = ck_alloc((size_t)count * sizeof(int32_t *));
    p->borders = ck_alloc((size_t)count * sizeof(void *));
    if (p->steps == NULL || p->transposed == NULL || p->conv_rows == NULL || p->sign_rules == NULL ||
        p->borders == NULL) {
        ck_program_destroy(p);
        return CK_ERR_OUT_OF_MEMORY;
    }
    memcpy(p->steps, steps, (size_t)count * sizeof(ck_step));
    const char *profiling = getenv("CK_PROFILE_STEPS");
    p->profiling = profiling != NULL && profiling[0] != '\0' && strcmp(profiling, "0") != 0;
    const char *split = getenv("CK_SPLIT_LAYERS");
    p->split_forced = split != NULL && (strcmp(split, "0") == 0 || strcmp(split, "1") == 0) ? split[0] - '0' : -1;
    ck_status status = check_steps(p);
    if (status != CK_OK && failed_step != NULL) *failed_step = p->failed_step;
    /* A binary conv step that writes only sign bits (a block's first conv) compares integers with thresholds
     * where the rule exists: the same bits for a fraction of the float work. */
    for (int i = 0; status == CK_OK && i < count; i++) {
        const ck_step *st = &p->steps[i];
        if (st->kind != CK_STEP_BCONV) continue;
        p->borders[i] = ck_alloc(ck_bconv_border_bytes(&st->shape, st->binary_weights));
        if (p->borders[i] == NULL) {
            status = CK_ERR_OUT_OF_MEMORY;
            break;
        }
        ck_bconv_border_fill(&st->shape, st->binary_weights, p->borders[i]);
        if (st->output >= 0 || st->residual >= 0 || st->output_bits < 0) continue;
        const ck_output_transform t = {st->scale, st->bias, NULL, st->flags, NULL, NULL, NULL};
        int32_t *rule = ck_alloc((size_t)(2 * st->out_channels) * sizeof(int32_t));
        if (rule == NULL) {
            status = CK_ERR_OUT_OF_MEMORY;
            break;
        }
        if (ck_bconv_sign_rule(st->binary_weights, &t, st->prescale, rule) == CK_OK) p->sign_rules[i] = rule;
        else ck_free(rule);
    }
    for (int i = 0; status == CK_OK && i < count; i++) {
        const ck_step *st = &p->steps[i];
        if (st->kind != CK_STEP_CONV_F32 && st->kind != CK_STEP_LINEAR) continue;
        if (conv_by_rows(st)) {
            status = ck_conv_rows_create(&st->shape, st->weights, st->out_channels, &p->conv_rows[i]);
            continue;
        }
        /* Weights with the outputs innermost: [kh][kw][C][out] for a convolution, [in][out] for LINEAR. */
        const int64_t o = st->out_channels;
        const int64_t taps_c = st->kind == CK_STEP_LINEAR ? st->shape.channels
                                                           : st->shape.kernel_h * st->shape.kernel_w * st->shape.channels;
        float *t = ck_alloc((size_t)(o * taps_c) * sizeof(float));
        if (t == NULL) {
            status = CK_ERR_OUT_OF_MEMORY;
            break;
        }
        for (int64_t f = 0; f < o; f++)
            for (int64_t j = 0; j < taps_c; j++) t[j * o + f] = st->weights[f * taps_c + j];
        p->transposed[i] = t;
    }
    if (status != CK_OK) {
        ck_program_destroy(p);
        return status;
    }
    size_t offset = 0;
    for (int b = 1; b < p->buffers; b++) {
        if (!p->info[b].defined) continue;
        p->offset[b] = offset;
        offset += round64((size_t)elements(&p->info[b]) * (p->info[b].bits ? sizeof(uint64_t) : sizeof(float)));
    }
    p->buffer_bytes = offset;
    *out = p;
    return CK_OK;
}

static void profile_flush(ck_program *p);

static void release_plan(ck_program *p) {
    profile_flush(p);
    ck_free(p->profile);
    p->profile = NULL;
    if (p->memory != NULL)
        for (int i = 0; i < p->planned_threads; i++) ck_free(p->memory[i]);
    ck_free(p->memory);
    p->memory = NULL;
    p->planned_threads = 0;
}

void ck_program_destroy(ck_program *p) {
    if (p == NULL) return;
    release_plan(p);
    if (p->transposed != NULL)
        for (int i = 0; i < p->count; i++) ck_free(p->transposed[i]);
    ck_free(p->transposed);
    if (p->conv_rows != NULL)
        for (int i = 0; i < p->count; i++) ck_conv_rows_destroy(p->conv_rows[i]);
    ck_free(p->conv_rows);
    if (p->sign_rules != NULL)
        for (int i = 0; i < p->count; i++) ck_free(p->sign_rules[i]);
    ck_free(p->sign_rules);
    if (p->borders != NULL)
        for (int i = 0; i < p->count; i++) ck_free(p->borders[i]);
    ck_free(p->borders);
    ck_free(p->steps);
    ck_free(p);
}

ck_status ck_program_sizes(const ck_program *p, int64_t *input_floats, int64_t *output_floats) {
    if (p == NULL) return CK_ERR_NULL_POINTER;
    if (input_floats != NULL) *input_floats = p->input_floats;
    if (output_floats != NULL) *output_floats = p->output_floats;
    return CK_OK;
}

/* Workspace of a float conv by rows with `threads` threads: the bordered image, shared, then per thread the
 * accumulators of the portable path and one output row (where the step writes only bits). */
static size_t conv_rows_workspace(const ck_step *st, const ck_conv_rows *rows, int threads) {
    int64_t border, scratch, oh, ow;
    ck_conv_rows_sizes(rows, &border, &scratch);
    ck_conv_output_size(&st->shape, &oh, &ow);
    return round64((size_t)border * sizeof(float)) +
           (size_t)threads * (round64((size_t)scratch * sizeof(float)) +
                              round64((size_t)(ow * st->out_channels) * sizeof(float)));
}

/* Memory for `threads` threads: thread 0 can also run a layer with all threads (workspace for the team). */
static ck_status plan(ck_program *p, int threads) {
    if (p->planned_threads == threads) return CK_OK;
    release_plan(p);
    size_t single = 0, team = 0;
    for (int i = 0; i < p->count; i++) {
        const ck_step *st = &p->steps[i];
        size_t a = 0, b = 0;
        if (st->kind == CK_STEP_BCONV) {
            a = ck_bconv2d_workspace_bytes(&st->shape, st->binary_weights, 1);
            b = ck_bconv2d_workspace_bytes(&st->shape, st->binary_weights, threads);
        } else if (p->conv_rows[i] != NULL) {
            a = conv_rows_workspace(st, p->conv_rows[i], 1);
            b = conv_rows_workspace(st, p->conv_rows[i], threads);
        }
        if (a > single) single = a;
        if (b > team) team = b;
    }
    p->workspace_single = round64(single);
    p->workspace_team = round64(team);
    p->split_calls = 0; /* the split policy is timed again for this thread count */
    p->split_best = -1;
    memset(p->split_window, 0, sizeof p->split_window);
    p->memory = ck_alloc((size_t)threads * sizeof(void *));
    if (p->memory == NULL) return CK_ERR_OUT_OF_MEMORY;
    if (p->profiling) {
        p->profile = ck_alloc((size_t)threads * (size_t)p->count * sizeof(double));
        if (p->profile == NULL) return CK_ERR_OUT_OF_MEMORY;
        memset(p->profile, 0, (size_t)threads * (size_t)p->count * sizeof(double));
    }
    p->planned_threads = threads;
    for (int i = 0; i < threads; i++) {
        p->memory[i] = ck_alloc(p->buffer_bytes + (i == 0 ? p->workspace_team : p->workspace_single));
        if (p->memory[i] == NULL) {
            release_plan(p);
            return CK_ERR_OUT_OF_MEMORY;
        }
    }
    return CK_OK;
}

/* conv_f32's transform of one pixel's sums acc[0..nb) (outputs o0 ...): the prescale only in `parts` (a constant)
 * when the step has one, every other part applied, a missing scale, bias or residual (`res`, at output o0) as 1, +0
 * and +0. Floats to `out` (at output o0) unless NULL; returns their sign bits. */
static inline __attribute__((always_inline)) uint64_t
conv_f32_transform(const int parts, const ck_step *st, const float *acc, int64_t nb, int64_t o0, const float *res,
                   float floor_before, float floor_after, float *out) {
    uint64_t word = 0;
    for (int64_t j = 0; j < nb; j++) {
        const float y = ck_transform(parts, acc[j], parts & CK_PART_PRESCALE ? st->prescale[o0 + j] : 1.0f,
                                     floor_before, st->scale != NULL ? st->scale[o0 + j] : 1.0f,
                                     st->bias != NULL ? st->bias[o0 + j] : 0.0f, res != NULL ? res[j] : 0.0f,
                                     floor_after);
        if (out != NULL) out[j] = y;
        word |= ck_sign_bit(y, j);
    }
    return word;
}

/* Float convolution of one image, output channels innermost so the multiply-adds vectorise; then the transform. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
conv_f32(const ck_step *st, const float *wt, const float *in, const float *residual, float *out, uint64_t *bits,
         int threads) {
    const ck_conv_shape *s = &st->shape;
    int64_t oh, ow;
    ck_conv_output_size(s, &oh, &ow);
    const int64_t o = st->out_channels, c = s->channels, kh = s->kernel_h, kw = s->kernel_w;
    const float floor_before = ck_relu_floor(st->flags, CK_RELU_BEFORE);
    const float floor_after = ck_relu_floor(st->flags, CK_RELU_AFTER);
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int64_t p = 0; p < oh * ow; p++) {
        const int64_t oy = p / ow, ox = p % ow;
        for (int64_t o0 = 0; o0 < o; o0 += OUT_BLOCK) {
            const int64_t nb = o - o0 < OUT_BLOCK ? o - o0 : OUT_BLOCK;
            float acc[OUT_BLOCK];
            for (int64_t j = 0; j < nb; j++) acc[j] = 0.0f;
            for (int64_t a = 0; a < kh; a++) {
                const int64_t iy = oy * s->stride_h - s->pad_h + a;
                if (iy < 0 || iy >= s->height) continue;
                for (int64_t b = 0; b < kw; b++) {
                    const int64_t ix = ox * s->stride_w - s->pad_w + b;
                    if (ix < 0 || ix >= s->width) continue;
                    const float *x = in + (iy * s->width + ix) * c;
                    const float *w = wt + ((a * kw + b) * c) * o + o0;
                    for (int64_t ch = 0; ch < c; ch++) {
                        const float xv = x[ch];
                        for (int64_t j = 0; j < nb; j++) acc[j] += xv * w[ch * o + j];
                    }
                }
            }
            const float *res = residual != NULL ? residual + p * o + o0 : NULL;
            float *dst = out != NULL ? out + p * o + o0 : NULL;
            const uint64_t word =
                st->prescale != NULL
                    ? conv_f32_transform(CK_PARTS_ALL, st, acc, nb, o0, res, floor_before, floor_after, dst)
                    : conv_f32_transform(CK_PARTS_ALL & ~CK_PART_PRESCALE, st, acc, nb, o0, res, floor_before,
                                         floor_after, dst);
            if (bits != NULL) bits[p * ck_words(o) + o0 / 64] = word;
        }
    }
}

#if defined(__x86_64__)
#include <immintrin.h>

/* conv_f32 with AVX-512 intrinsics (the stems of small networks): output channels in groups of up to 64, one
 * register per 16 outputs of a group, the same multiply-then-add order per output as the generic loop (each output's
 * sum is its own chain of additions, so how outputs are grouped changes no value). */

/* The transform of one pixel's accumulators (outputs o0 ... of its group), as conv_f32 applies it: `parts` has
 * the prescale only when the step has one. */
static inline __attribute__((always_inline, target("avx512f"))) void
conv_store_chunks(const int chunks, const ck_step *st, const __m512 *acc, const int parts,
                  const ck_transform_avx512 *tf, ck_floors_avx512 floors, const float *residual, float *out,
                  uint64_t *bits, int64_t p, int64_t o0) {
    const int64_t o = st->out_channels;
    uint64_t word = 0;
    for (int k = 0; k < chunks; k++) {
        const int64_t e = p * o + o0 + 16 * k;
        const __m512 y = ck_transform_avx512_apply(parts, tf, k, floors, acc[k], residual, e);
        if (out != NULL) _mm512_mask_storeu_ps(out + e, tf->mask[k], y);
        word |= (uint64_t)ck_transform_avx512_signs(tf, k, y) << (16 * k);
    }
    if (bits != NULL) bits[p * ck_words(o) + o0 / 64] = word;
}

/* Pixels per block of the interior: that many independent chains of additions hide the latency of each (a
 * single pixel's sum is one chain of kernel_h·kernel_w·C dependent adds), and each weight vector loaded serves
 * that many pixels, while blocks × chunks accumulators, the chunks' weights and a broadcast stay within the 32
 * registers. */
#define CONV_BLOCK(chunks) ((chunks) == 1 ? 12 : (chunks) == 2 ? 8 : (chunks) == 3 ? 6 : 4)

/* Pixels [p0, p1), outputs [o0, o0 + 16·chunks) ∩ [o0, out_channels) (o0 a multiple of 64). */
static inline __attribute__((always_inline, target("avx512f"))) void
conv_pixels_chunks(const int chunks, const ck_step *st, const float *wt, const float *in, const float *residual,
                   float *out, uint64_t *bits, int64_t p0, int64_t p1, int64_t o0) {
    enum { MAX_BLOCK = 12 };
    const int block = CONV_BLOCK(chunks);
    const ck_conv_shape *s = &st->shape;
    int64_t oh, ow;
    ck_conv_output_size(s, &oh, &ow);
    const int64_t o = st->out_channels, c = s->channels, kh = s->kernel_h, kw = s->kernel_w;
    const int64_t sh = s->stride_h, sw = s->stride_w;
    ck_transform_avx512 tf;
    ck_transform_avx512_init(&tf, chunks, st->prescale, st->scale, st->bias, o0, o - o0);
    const ck_floors_avx512 floors = ck_floors_avx512_of(st->flags);
    const __mmask16 *mask = tf.mask;
    const int parts = st->prescale != NULL ? CK_PARTS_ALL : CK_PARTS_ALL & ~CK_PART_PRESCALE;
    const __m512 zero = _mm512_setzero_ps();
    /* Columns whose window lies inside the input: ox in [x_lo, x_hi). */
    const int64_t x_lo = (s->pad_w + sw - 1) / sw;
    const int64_t x_hi = s->width + s->pad_w >= kw ? (s->width + s->pad_w - kw) / sw + 1 : 0;
    int64_t oy = p0 / ow, ox = p0 % ow;
    for (int64_t p = p0; p < p1;) {
        const int64_t y0 = oy * sh - s->pad_h;
        /* A block of columns whose windows lie inside horizontally; near the end of the run it starts earlier
         * and recomputes a few pixels of the previous block (same values), so there is no partial block. */
        const int64_t back = ox + block > x_hi ? ox + block - x_hi : 0;
        if (ox >= x_lo && ox < x_hi && ox - back >= x_lo && p - back >= p0 && p - back + block <= p1) {
            const int64_t bx = ox - back, bp = p - back;
            /* `block` pixels of one output row together: one bounds check per kernel row, each pixel's sum in
             * the same order as alone. */
            __m512 acc[MAX_BLOCK][4];
#pragma clang loop unroll(full)
            for (int q = 0; q < block; q++)
#pragma clang loop unroll(full)
                for (int k = 0; k < chunks; k++) acc[q][k] = zero;
            /* A kernel row's taps (column b, channel ch) are kw·C consecutive floats of the input row and
             * consecutive weight rows, j = b·C + ch: one loop in the order (b, ch), long even for a stem's 3
             * channels. */
            const int64_t run = kw * c, px = sw * c;
            for (int64_t a = 0; a < kh; a++) {
                if (y0 + a < 0 || y0 + a >= s->height) continue;
                const float *x = in + ((y0 + a) * s->width + bx * sw - s->pad_w) * c;
                const float *w = wt + (a * run) * o + o0;
                for (int64_t j = 0; j < run; j++) {
                    __m512 wv[4];
#pragma clang loop unroll(full)
                    for (int k = 0; k < chunks; k++) wv[k] = _mm512_maskz_loadu_ps(mask[k], w + j * o + 16 * k);
#pragma clang loop unroll(full)
                    for (int q = 0; q < block; q++) {
                        const __m512 xv = _mm512_set1_ps(x[q * px + j]);
#pragma clang loop unroll(full)
                        for (int k = 0; k < chunks; k++)
                            acc[q][k] = _mm512_add_ps(acc[q][k], _mm512_mul_ps(xv, wv[k]));
                    }
                }
            }
            for (int q = 0; q < block; q++)
                conv_store_chunks(chunks, st, acc[q], parts, &tf, floors, residual, out, bits, bp + q, o0);
            p = bp + block;
            ox = bx + block;
        } else {
            __m512 acc[4] = {zero, zero, zero, zero};
            for (int64_t a = 0; a < kh; a++) {
                const int64_t iy = y0 + a;
                if (iy < 0 || iy >= s->height) continue;
                for (int64_t b = 0; b < kw; b++) {
                    const int64_t ix = ox * sw - s->pad_w + b;
                    if (ix < 0 || ix >= s->width) continue;
                    const float *x = in + (iy * s->width + ix) * c;
                    const float *w = wt + ((a * kw + b) * c) * o + o0;
                    for (int64_t ch = 0; ch < c; ch++) {
                        const __m512 xv = _mm512_set1_ps(x[ch]);
                        for (int k = 0; k < chunks; k++)
                            acc[k] = _mm512_add_ps(acc[k], _mm512_mul_ps(xv, _mm512_maskz_loadu_ps(mask[k], w + ch * o + 16 * k)));
                    }
                }
            }
            conv_store_chunks(chunks, st, acc, parts, &tf, floors, residual, out, bits, p, o0);
            p++;
            ox++;
        }
        if (ox == ow) {
            ox = 0;
            oy++;
        }
    }
}

/* Pixels [p0, p1), all outputs, 64 at a time; the number of 16-output registers is a constant in each instance, so
 * they stay in registers. */
__attribute__((target("avx512f"))) static void conv_pixels_avx512(const ck_step *st, const float *wt, const float *in,
                                                                  const float *residual, float *out, uint64_t *bits,
                                                                  int64_t p0, int64_t p1) {
    for (int64_t o0 = 0; o0 < st->out_channels; o0 += 64) {
        switch ((st->out_channels - o0 >= 64 ? 64 : st->out_channels - o0 + 15) / 16) {
        case 1: conv_pixels_chunks(1, st, wt, in, residual, out, bits, p0, p1, o0); break;
        case 2: conv_pixels_chunks(2, st, wt, in, residual, out, bits, p0, p1, o0); break;
        case 3: conv_pixels_chunks(3, st, wt, in, residual, out, bits, p0, p1, o0); break;
        default: conv_pixels_chunks(4, st, wt, in, residual, out, bits, p0, p1, o0); break;
        }
    }
}

static void conv_f32_avx512(const ck_step *st, const float *wt, const float *in, const float *residual, float *out,
                            uint64_t *bits, int threads) {
    int64_t oh, ow;
    ck_conv_output_size(&st->shape, &oh, &ow);
    if (threads == 1) {
        conv_pixels_avx512(st, wt, in, residual, out, bits, 0, oh * ow);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        const int64_t team = omp_get_num_threads(), me = omp_get_thread_num();
        conv_pixels_avx512(st, wt, in, residual, out, bits, oh * ow * me / team, oh * ow * (me + 1) / team);
    }
}
#endif

/* Plain loops the compiler vectorises: a memcpy call per pixel cost more than the copy of its few channels. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void shortcut(const ck_step *st, const float *in,
                                                                                 float *out) {
    const ck_conv_shape *s = &st->shape;
    const int64_t stride = s->stride_h, c = s->channels, o = st->out_channels, pad = (o - c) / 2;
    const int64_t oh = (s->height + stride - 1) / stride, ow = (s->width + stride - 1) / stride;
    for (int64_t y = 0; y < oh; y++) {
        for (int64_t x = 0; x < ow; x++) {
            float *restrict dst = out + (y * ow + x) * o;
            const float *restrict src = in + (y * stride * s->width + x * stride) * c;
            for (int64_t j = 0; j < pad; j++) dst[j] = 0.0f;
            for (int64_t j = 0; j < c; j++) dst[pad + j] = src[j];
            for (int64_t j = pad + c; j < o; j++) dst[j] = 0.0f;
        }
    }
}

/* As ck_global_avgpool_forward_f32, which the training graph calls: each channel's sum in double over the pixels
 * in order, one rounding of sum/pixels to float (blocks of channels only bound the stack); then ·scale and
 * + bias as two float operations, as a batch norm after the pool computes them. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void global_avgpool(const ck_step *st,
                                                                                       const float *in, float *out) {
    enum { SPAN = 256 };
    const int64_t pixels = st->shape.height * st->shape.width, c = st->shape.channels;
    for (int64_t k0 = 0; k0 < c; k0 += SPAN) {
        const int64_t n = c - k0 < SPAN ? c - k0 : SPAN;
        double acc[SPAN];
        for (int64_t j = 0; j < n; j++) acc[j] = 0.0;
        for (int64_t p = 0; p < pixels; p++) {
            const float *src = in + p * c + k0;
            for (int64_t j = 0; j < n; j++) acc[j] += (double)src[j];
        }
        for (int64_t j = 0; j < n; j++) {
            float y = (float)(acc[j] / (double)pixels);
            if (st->scale != NULL) y *= st->scale[k0 + j];
            if (st->bias != NULL) y += st->bias[k0 + j];
            out[k0 + j] = y;
        }
    }
}

/* Bits of the n channels from channel k0 (a multiple of 64) of pixel p, from their floats y. */
static inline void store_signs(const float *y, int64_t n, uint64_t *bits, int64_t p, int64_t c, int64_t k0) {
    const int64_t words = ck_words(c);
    for (int64_t q = 0; q < n; q += 64) bits[p * words + (k0 + q) / 64] = ck_sign_word(y + q, n - q < 64 ? n - q : 64);
}

/* Channels a pool step computes at once: all of them when it writes floats (each window walked once), else 64 on
 * the stack (one word of bits). Either way each channel sees the window's pixels in the same order. */
static inline int64_t pool_span(int64_t c, const float *out) { return out != NULL ? c : CHUNK; }

/* ck_maxpool2d_forward_f32's loop without argmax: −∞ to start, the padding skipped, strictly greater keeps the
 * first maximum and v != v lets NaN through. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
maxpool_f32_range(const ck_step *st, const float *in, float *out, uint64_t *bits, int64_t p0, int64_t p1) {
    const ck_conv_shape *s = &st->shape;
    int64_t oh, ow;
    ck_conv_output_size(s, &oh, &ow);
    const int64_t c = s->channels, span = pool_span(c, out);
    for (int64_t p = p0; p < p1; p++) {
        const int64_t y0 = (p / ow) * s->stride_h - s->pad_h, x0 = (p % ow) * s->stride_w - s->pad_w;
        for (int64_t k0 = 0; k0 < c; k0 += span) {
            const int64_t n = c - k0 < span ? c - k0 : span;
            float chunk[CHUNK];
            float *dst = out != NULL ? out + p * c + k0 : chunk;
            for (int64_t j = 0; j < n; j++) dst[j] = -INFINITY;
            for (int64_t a = 0; a < s->kernel_h; a++) {
                const int64_t iy = y0 + a;
                if (iy < 0 || iy >= s->height) continue;
                for (int64_t b = 0; b < s->kernel_w; b++) {
                    const int64_t ix = x0 + b;
                    if (ix < 0 || ix >= s->width) continue;
                    const float *src = in + (iy * s->width + ix) * c + k0;
                    for (int64_t j = 0; j < n; j++) {
                        const float v = src[j];
                        dst[j] = (v > dst[j] || v != v) ? v : dst[j];
                    }
                }
            }
            if (bits != NULL) store_signs(dst, n, bits, p, c, k0);
        }
    }
}

/* Output pixels split among `threads` threads (each pixel's value does not depend on the split). */
static void maxpool_f32(const ck_step *st, const float *in, float *out, uint64_t *bits, int threads) {
    int64_t oh, ow;
    ck_conv_output_size(&st->shape, &oh, &ow);
    if (threads == 1) {
        maxpool_f32_range(st, in, out, bits, 0, oh * ow);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        const int64_t team = omp_get_num_threads(), me = omp_get_thread_num();
        maxpool_f32_range(st, in, out, bits, oh * ow * me / team, oh * ow * (me + 1) / team);
    }
}

/* ck_avgpool2d_forward_f32's loop: from 0, the window's real pixels added in raster order, then one division by
 * kernel_h·kernel_w (the padding counts in the divisor), so the floats are the training graph's. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
avgpool_f32(const ck_step *st, const float *in, float *out, uint64_t *bits) {
    const ck_conv_shape *s = &st->shape;
    int64_t oh, ow;
    ck_conv_output_size(s, &oh, &ow);
    const int64_t c = s->channels, span = pool_span(c, out);
    const float divisor = (float)(s->kernel_h * s->kernel_w);
    for (int64_t p = 0; p < oh * ow; p++) {
        const int64_t y0 = (p / ow) * s->stride_h - s->pad_h, x0 = (p % ow) * s->stride_w - s->pad_w;
        for (int64_t k0 = 0; k0 < c; k0 += span) {
            const int64_t n = c - k0 < span ? c - k0 : span;
            float chunk[CHUNK];
            float *dst = out != NULL ? out + p * c + k0 : chunk;
            for (int64_t j = 0; j < n; j++) dst[j] = 0.0f;
            for (int64_t a = 0; a < s->kernel_h; a++) {
                const int64_t iy = y0 + a;
                if (iy < 0 || iy >= s->height) continue;
                for (int64_t b = 0; b < s->kernel_w; b++) {
                    const int64_t ix = x0 + b;
                    if (ix < 0 || ix >= s->width) continue;
                    const float *src = in + (iy * s->width + ix) * c + k0;
                    for (int64_t j = 0; j < n; j++) dst[j] += src[j];
                }
            }
            for (int64_t j = 0; j < n; j++) dst[j] /= divisor;
            if (bits != NULL) store_signs(dst, n, bits, p, c, k0);
        }
    }
}

/* The output transform (transform.h) of n channels, `parts` a constant so that each of the 16 variants is a plain
 * loop. An absent part is skipped, not applied as 1 or 0 (x + 0 would turn −0 into +0), as the training graph's
 * separate ops skip it; its array is NULL and not read. */
static inline __attribute__((always_inline)) void
transform_chunk(const int parts, int64_t n, const float *x, const float *pre, const float *scale, const float *bias,
                const float *res, float floor_before, float floor_after, float *y) {
    /* y is x itself or separate memory, never a shifted view of it: each element is read before it is written, so
     * vectors are safe (without the pragma the in-place case fails the compiler's overlap check and runs scalar). */
#pragma clang loop vectorize(assume_safety)
    for (int64_t j = 0; j < n; j++)
        y[j] = ck_transform(parts, x[j], parts & CK_PART_PRESCALE ? pre[j] : 1.0f, floor_before,
                            parts & CK_PART_SCALE ? scale[j] : 1.0f, parts & CK_PART_BIAS ? bias[j] : 0.0f,
                            parts & CK_PART_RESIDUAL ? res[j] : 0.0f, floor_after);
}

/* The transform of `pixels` pixels of c channels from x (NHWC; `out` may be x itself), floats to `out` and/or
 * sign bits to `bits`. Channels go 64 at a time (a word of bits) when only bits are written. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
transform_pixels(const ck_step *st, int64_t pixels, int64_t c, const float *x, const float *residual, float *out,
                 uint64_t *bits) {
    const float *pre = st->prescale, *scale = st->scale, *bias = st->bias;
    const float floor_before = ck_relu_floor(st->flags, CK_RELU_BEFORE);
    const float floor_after = ck_relu_floor(st->flags, CK_RELU_AFTER);
    const int variant = (pre != NULL ? CK_PART_PRESCALE : 0) | (scale != NULL ? CK_PART_SCALE : 0) |
                        (bias != NULL ? CK_PART_BIAS : 0) | (residual != NULL ? CK_PART_RESIDUAL : 0);
    const int64_t span = out != NULL ? c : CHUNK;
    for (int64_t p = 0; p < pixels; p++) {
        for (int64_t k0 = 0; k0 < c; k0 += span) {
            const int64_t n = c - k0 < span ? c - k0 : span;
            float chunk[CHUNK];
            const float *src = x + p * c + k0, *res = residual != NULL ? residual + p * c + k0 : NULL;
            float *dst = out != NULL ? out + p * c + k0 : chunk;
            const float *pr = pre != NULL ? pre + k0 : NULL, *sc = scale != NULL ? scale + k0 : NULL;
            const float *bi = bias != NULL ? bias + k0 : NULL;
            switch (variant) {
#define TRANSFORM_CASE(v)                                                                   \
    case v: transform_chunk(v, n, src, pr, sc, bi, res, floor_before, floor_after, dst); break;
                TRANSFORM_CASE(0) TRANSFORM_CASE(1) TRANSFORM_CASE(2) TRANSFORM_CASE(3)
                TRANSFORM_CASE(4) TRANSFORM_CASE(5) TRANSFORM_CASE(6) TRANSFORM_CASE(7)
                TRANSFORM_CASE(8) TRANSFORM_CASE(9) TRANSFORM_CASE(10) TRANSFORM_CASE(11)
                TRANSFORM_CASE(12) TRANSFORM_CASE(13) TRANSFORM_CASE(14) TRANSFORM_CASE(15)
#undef TRANSFORM_CASE
            }
            if (bits != NULL) store_signs(dst, n, bits, p, c, k0);
        }
    }
}

/* LINEAR: out[f] = (Σ_i w[f][i]·x[i], from 0, added in order i) + bias[f] (+0 without a bias). The weights are
 * transposed (`wt` [n][o]) so that CHUNK outputs advance together, each still its own chain of additions in order
 * i: the floats of the one-output-at-a-time loop, without its single chain's latency per output. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
linear_portable(const ck_step *st, const float *wt, const float *in, float *out, int64_t b0, int64_t b1) {
    const int64_t n = st->shape.channels, o = st->out_channels;
    for (int64_t f0 = b0 * CHUNK; f0 < o && f0 < b1 * CHUNK; f0 += CHUNK) {
        const int64_t nb = o - f0 < CHUNK ? o - f0 : CHUNK;
        float acc[CHUNK];
        for (int64_t j = 0; j < nb; j++) acc[j] = 0.0f;
        for (int64_t i = 0; i < n; i++) {
            const float x = in[i];
            const float *w = wt + i * o + f0;
            for (int64_t j = 0; j < nb; j++) acc[j] += w[j] * x;
        }
        for (int64_t j = 0; j < nb; j++) out[f0 + j] = acc[j] + (st->bias != NULL ? st->bias[f0 + j] : 0.0f);
    }
}

#if defined(__x86_64__)
/* linear_portable's loop with the accumulators of `chunks` × 16 outputs in registers. */
static inline __attribute__((always_inline, target("avx512f"))) void
linear_chunks(const int chunks, const ck_step *st, const float *wt, const float *in, float *out, int64_t f0) {
    const int64_t n = st->shape.channels, o = st->out_channels;
    __mmask16 mask[4];
    __m512 acc[4];
    for (int k = 0; k < chunks; k++) {
        const int64_t left = o - f0 - 16 * k;
        mask[k] = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
        acc[k] = _mm512_setzero_ps();
    }
    for (int64_t i = 0; i < n; i++) {
        const __m512 x = _mm512_set1_ps(in[i]);
        const float *w = wt + i * o + f0;
        for (int k = 0; k < chunks; k++)
            acc[k] = _mm512_add_ps(acc[k], _mm512_mul_ps(_mm512_maskz_loadu_ps(mask[k], w + 16 * k), x));
    }
    for (int k = 0; k < chunks; k++) {
        const __m512 b = st->bias != NULL ? _mm512_maskz_loadu_ps(mask[k], st->bias + f0 + 16 * k) : _mm512_setzero_ps();
        _mm512_mask_storeu_ps(out + f0 + 16 * k, mask[k], _mm512_add_ps(acc[k], b));
    }
}

__attribute__((target("avx512f"))) static void linear_avx512(const ck_step *st, const float *wt, const float *in,
                                                             float *out, int64_t b0, int64_t b1) {
    for (int64_t f0 = b0 * 64; f0 < st->out_channels && f0 < b1 * 64; f0 += 64) {
        switch ((st->out_channels - f0 >= 64 ? 64 : st->out_channels - f0 + 15) / 16) {
        case 1: linear_chunks(1, st, wt, in, out, f0); break;
        case 2: linear_chunks(2, st, wt, in, out, f0); break;
        case 3: linear_chunks(3, st, wt, in, out, f0); break;
        default: linear_chunks(4, st, wt, in, out, f0); break;
        }
    }
}
#endif

/* Blocks [b0, b1) of CHUNK outputs. */
static void linear_blocks(const ck_step *st, const float *wt, const float *in, float *out, int64_t b0, int64_t b1) {
#if defined(__x86_64__)
    if (ck_isa_active() == CK_ISA_AVX512) {
        linear_avx512(st, wt, in, out, b0, b1);
        return;
    }
#endif
    linear_portable(st, wt, in, out, b0, b1);
}

/* Blocks of CHUNK outputs split among `threads` threads: each reads its share of the weights, which is what
 * the step's time goes to (each weight is used once per image). */
static void linear(const ck_step *st, const float *wt, const float *in, float *out, int threads) {
    const int64_t blocks = (st->out_channels + CHUNK - 1) / CHUNK;
    if (threads == 1) {
        linear_blocks(st, wt, in, out, 0, blocks);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        const int64_t team = omp_get_num_threads(), me = omp_get_thread_num();
        linear_blocks(st, wt, in, out, blocks * me / team, blocks * (me + 1) / team);
    }
}

/* One image of a float conv step, on the AVX-512 path when it applies: both paths add the products in the
 * same order (kernel row, kernel column, channel), so they give the same floats. */
static void conv_image(const ck_step *st, const float *wt, const float *in, const float *residual, float *out,
                       uint64_t *bits, int threads) {
#if defined(__x86_64__)
    if (ck_isa_active() == CK_ISA_AVX512) {
        conv_f32_avx512(st, wt, in, residual, out, bits, threads);
        return;
    }
#endif
    conv_f32(st, wt, in, residual, out, bits, threads);
}

ck_status ck_conv2d_direct_f32(const float *input, const ck_conv_shape *s, const float *weight_rows,
                               int64_t out_channels, float *out) {
    if (input == NULL || s == NULL || weight_rows == NULL || out == NULL) return CK_ERR_NULL_POINTER;
    int64_t oh, ow;
    ck_status status = ck_conv_output_size(s, &oh, &ow);
    if (status != CK_OK) return status;
    if (!ck_size_ok(out_channels)) return CK_ERR_INVALID_SIZE;
    const int64_t depth = s->kernel_h * s->kernel_w * s->channels;
    float *wt = malloc((size_t)(depth * out_channels) * sizeof(float));
    if (wt == NULL) return CK_ERR_OUT_OF_MEMORY;
    for (int64_t f = 0; f < out_channels; f++)
        for (int64_t j = 0; j < depth; j++) wt[j * out_channels + f] = weight_rows[f * depth + j];
    ck_step st = {.kind = CK_STEP_CONV_F32, .shape = *s, .out_channels = out_channels};
    st.shape.batch = 1;
    const int64_t in_size = s->height * s->width * s->channels, out_size = oh * ow * out_channels;
    const int threads = ck_get_num_threads();
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < s->batch; n++) conv_image(&st, wt, input + n * in_size, NULL, out + n * out_size, NULL, 1);
    free(wt);
    return CK_OK;
}

/* Rows [r0, r1) of a float conv by rows: each row's products (ck_conv2d_forward_f32's), then its transform while
 * the row is still in L1. Without a float output the row goes to `row` (OW·out_channels floats). */
static void conv_rows_range(const ck_step *st, const ck_conv_rows *plan, const float *border, const float *residual,
                            float *out, uint64_t *bits, float *scratch, float *row, int64_t r0, int64_t r1) {
    int64_t oh, ow;
    ck_conv_output_size(&st->shape, &oh, &ow);
    const int64_t o = st->out_channels, n = ow * o;
    for (int64_t r = r0; r < r1; r++) {
        float *y = out != NULL ? out + r * n : row;
        ck_conv_rows_compute(plan, border, r, r + 1, y, scratch);
        transform_pixels(st, ow, o, y, residual != NULL ? residual + r * n : NULL, out != NULL ? y : NULL,
                         bits != NULL ? bits + r * ow * ck_words(o) : NULL);
    }
}

/* One image of a float conv by rows in workspace `ws` (conv_rows_workspace's layout), its output rows split
 * among `threads` threads; each output's value does not depend on the split. */
static void conv_rows_image(const ck_step *st, const ck_conv_rows *plan, const float *in, const float *residual,
                            float *out, uint64_t *bits, int threads, char *ws) {
    int64_t border_floats, scratch_floats, oh, ow;
    ck_conv_rows_sizes(plan, &border_floats, &scratch_floats);
    ck_conv_output_size(&st->shape, &oh, &ow);
    char *mine = ws + round64((size_t)border_floats * sizeof(float));
    const size_t scratch_bytes = round64((size_t)scratch_floats * sizeof(float));
    const size_t per_thread = scratch_bytes + round64((size_t)(ow * st->out_channels) * sizeof(float));
    /* A 1×1 convolution without padding reads the image in place (the bordered copy would be the image). */
    const float *border = in;
    if (!ck_conv_rows_reads_image(plan)) {
        ck_conv_rows_border(plan, in, (float *)ws);
        border = (const float *)ws;
    }
    if (threads == 1) {
        conv_rows_range(st, plan, border, residual, out, bits, (float *)mine, (float *)(mine + scratch_bytes), 0, oh);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        const int64_t team = omp_get_num_threads(), me = omp_get_thread_num();
        char *own = mine + (size_t)me * per_thread;
        conv_rows_range(st, plan, border, residual, out, bits, (float *)own, (float *)(own + scratch_bytes),
                        oh * me / team, oh * (me + 1) / team);
    }
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *kind_name(ck_step_kind kind) {
    static const char *names[] = {"conv_f32", "bconv", "shortcut", "bmaxpool", "global_avg", "linear", "maxpool_f32",
                                  "avgpool_f32", "affine"};
    return (unsigned)kind <= CK_STEP_AFFINE ? names[kind] : "?";
}

/* Multiply-adds per image of a convolution or linear step (binary ones for BCONV), else 0. */
static double step_macs(const ck_step *st) {
    int64_t oh = 1, ow = 1;
    if (st->kind == CK_STEP_LINEAR) return (double)st->shape.channels * (double)st->out_channels;
    if (st->kind != CK_STEP_CONV_F32 && st->kind != CK_STEP_BCONV) return 0.0;
    ck_conv_output_size(&st->shape, &oh, &ow);
    return (double)(oh * ow * st->out_channels) * (double)(st->shape.kernel_h * st->shape.kernel_w * st->shape.channels);
}

/* Prints the accumulated step times (CK_PROFILE_STEPS) to stderr and starts over. With threads across images
 * (batch ≥ threads) a step's time is the sum of the threads' times, so "ms/image" is thread time: divide by the
 * threads for wall time; otherwise it is wall time with the threads inside each layer. */
static double split_seconds(const ck_program *p, int policy);

static void profile_flush(ck_program *p) {
    if (p->profile == NULL || p->profile_images == 0) return;
    const int threads = p->planned_threads;
    const int across = p->profile_batch >= threads && threads > 1;
    double total = 0.0, by_kind[CK_STEP_AFFINE + 1] = {0};
    for (int i = 0; i < p->count; i++) {
        double t = 0.0;
        for (int k = 0; k < threads; k++) t += p->profile[(size_t)k * (size_t)p->count + (size_t)i];
        p->profile[i] = t; /* row 0 now holds the sums */
        total += t;
        by_kind[p->steps[i].kind] += t;
    }
    const double images = (double)p->profile_images;
    fprintf(stderr, "ck_program profile: batch %lld, %d thread(s) %s, %lld images; %.4f ms per image (%s)\n",
            (long long)p->profile_batch, threads, across ? "across images" : "within layers",
            (long long)p->profile_images, 1e3 * total / images, across ? "thread time" : "wall time");
    if (!across && threads > 1)
        fprintf(stderr, "  layers split among the threads for %lld images, one thread for %lld (%.4f / %.4f ms per image)\n",
                (long long)p->split_used[1], (long long)p->split_used[0], 1e3 * split_seconds(p, 1),
                1e3 * split_seconds(p, 0));
    p->split_used[0] = p->split_used[1] = 0;
    fprintf(stderr, "  step kind         input (HxWxC)    out  k s   ms/image      %%   G MAC/s  buffers in>out,bits[+res] flags\n");
    for (int i = 0; i < p->count; i++) {
        const ck_step *st = &p->steps[i];
        const double t = p->profile[i] / images, macs = step_macs(st);
        fprintf(stderr, "  %4d %-11s %4lldx%-4lldx%-5lld %5lld %lld %lld %10.4f %6.2f", i, kind_name(st->kind),
                (long long)st->shape.height, (long long)st->shape.width, (long long)st->shape.channels,
                (long long)st->out_channels, (long long)st->shape.kernel_h, (long long)st->shape.stride_h, 1e3 * t,
                100.0 * p->profile[i] / total);
        if (macs > 0.0 && t > 0.0) fprintf(stderr, " %9.1f", 1e-9 * macs / t);
        else fprintf(stderr, " %9s", "");
        fprintf(stderr, "  %d>%d,%d", st->input, st->output, st->output_bits);
        if (st->residual >= 0) fprintf(stderr, "+%d", st->residual);
        fprintf(stderr, " %d\n", st->flags);
    }
    for (int k = 0; k <= CK_STEP_AFFINE; k++)
        if (by_kind[k] > 0.0)
            fprintf(stderr, "  all %-11s %35.4f %6.2f\n", kind_name((ck_step_kind)k), 1e3 * by_kind[k] / images,
                    100.0 * by_kind[k] / total);
    memset(p->profile, 0, (size_t)threads * (size_t)p->count * sizeof(double));
    p->profile_images = 0;
}

/* Threads worth using inside one step, from its work in approximate cycles of one core: a binary word of a patch
 * against 8 output channels is a XOR, a popcount and an add on 512 bits (2 such vector operations per cycle: 3/16
 * cycle per word and channel); a float multiply-add takes 1/16 cycle. Handing a layer to the team costs a fork and a
 * join of the spinning workers (about a microsecond), so steps above ~16 k cycles (~5 µs) are split: every 3×3
 * binary layer of 32 or more channels on 16×16 pixels. A large float max-pool (an ImageNet stem's) and a large
 * linear step are split too; the other pools, the transform and the rest are a short pass over memory, one thread. */
static int step_threads(const ck_step *st, int threads) {
    if (threads == 1) return 1;
    int64_t oh = 1, ow = 1;
    ck_conv_output_size(&st->shape, &oh, &ow);
    const int64_t taps = st->shape.kernel_h * st->shape.kernel_w;
    int64_t cycles = 0;
    if (st->kind == CK_STEP_BCONV) cycles = oh * ow * st->out_channels * taps * ck_words(st->shape.channels) * 3 / 16;
    if (st->kind == CK_STEP_CONV_F32) cycles = oh * ow * st->out_channels * taps * st->shape.channels / 16;
    /* A max-pool compares 16 floats per operation; a linear step streams its weights, ~4 floats per cycle. */
    if (st->kind == CK_STEP_MAXPOOL_F32) cycles = oh * ow * st->shape.channels * taps / 16;
    if (st->kind == CK_STEP_LINEAR) cycles = st->shape.channels * st->out_channels / 4;
    return cycles >= 16384 ? threads : 1;
}

/* Fewer images than threads: split each layer among the threads, or run the whole image on one? On an idle machine
 * splitting is faster (1.5–1.9× for CIFAR networks on 2 cores); when other processes hold the cores, a thread that
 * is descheduled makes its team wait at every layer's barrier for a time slice, and one thread is 1.6–3× faster
 * than two. Both give the same floats, so the program times itself: after warm-up calls it tries each way a few
 * times, then runs the faster one and retries the other after SPLIT_EXPLORE calls, the wait doubling each time a
 * retry confirms the choice (up to SPLIT_EXPLORE_MAX). A way's time is the least wall time per image of its last
 * SPLIT_WINDOW calls: a call slowed by a preemption does not count, and a change of load shows within SPLIT_WINDOW
 * calls of the way in use (or one retry of the other). CK_SPLIT_LAYERS=0 or 1 in the environment (read at creation)
 * fixes the choice. */
enum { SPLIT_WARMUP = 2, SPLIT_TRIALS = 8, SPLIT_EXPLORE = 64, SPLIT_EXPLORE_MAX = 1024 };

static double split_seconds(const ck_program *p, int policy) {
    double least = 0.0;
    for (int k = 0; k < SPLIT_WINDOW; k++) {
        const double t = p->split_window[policy][k];
        if (t > 0.0 && (least == 0.0 || t < least)) least = t;
    }
    return least;
}

static int split_policy(ck_program *p) {
    if (p->split_forced >= 0) return p->split_forced;
    const int64_t call = p->split_calls++;
    if (call < SPLIT_WARMUP) return 1;
    if (call < SPLIT_WARMUP + SPLIT_TRIALS) return (int)((call - SPLIT_WARMUP) & 1) ^ 1;
    const int best = split_seconds(p, 1) <= split_seconds(p, 0);
    if (best != p->split_best) { /* a new choice: retry the other soon */
        p->split_best = best;
        p->split_interval = SPLIT_EXPLORE;
        p->split_retry = call + SPLIT_EXPLORE;
    }
    if (call < p->split_retry) return best;
    /* Each retry that leaves the choice as it was doubles the wait for the next (a retry of the slower way costs
     * its difference: up to 3× a call when the cores are taken). */
    p->split_retry = call + p->split_interval;
    if (p->split_interval < SPLIT_EXPLORE_MAX) p->split_interval *= 2;
    return !best;
}

static void split_record(ck_program *p, int policy, double seconds) {
    if (p->split_forced >= 0 || p->split_calls <= SPLIT_WARMUP) return; /* first calls: page faults, cold caches */
    p->split_window[policy][p->split_next[policy]] = seconds;
    p->split_next[policy] = (p->split_next[policy] + 1) % SPLIT_WINDOW;
}

/* Runs every step on one image with up to `threads` threads inside each layer, in memory `mem`. */
static ck_status run_image(const ck_program *p, const float *image, float *result, char *mem, int threads,
                           double *times) {
    void *buf[MAX_BUFFERS] = {0};
    buf[0] = (void *)image;
    for (int b = 1; b < p->buffers; b++)
        if (p->info[b].defined) buf[b] = mem + p->offset[b];
    void *ws = mem + p->buffer_bytes;
    const int team = threads;
    for (int i = 0; i < p->count; i++) {
        const ck_step *st = &p->steps[i];
        const double started = times != NULL ? now_seconds() : 0.0;
        threads = step_threads(st, team);
        float *out = st->output >= 0 ? buf[st->output] : NULL;
        uint64_t *bits = st->output_bits >= 0 ? buf[st->output_bits] : NULL;
        const float *residual = st->residual >= 0 ? buf[st->residual] : NULL;
        switch (st->kind) {
        case CK_STEP_CONV_F32:
            if (p->conv_rows[i] != NULL)
                conv_rows_image(st, p->conv_rows[i], buf[st->input], residual, out, bits, threads, ws);
            else conv_image(st, p->transposed[i], buf[st->input], residual, out, bits, threads);
            break;
        case CK_STEP_BCONV: {
            ck_output_transform t = {st->scale, st->bias, residual, st->flags, NULL, out, bits};
            const ck_bconv_prepared prepared = {p->sign_rules[i], p->borders[i]};
            ck_status status = ck_bconv2d_run(buf[st->input], &st->shape, st->binary_weights, &t, st->prescale,
                                              &prepared, threads, ws);
            if (status != CK_OK) return status;
            break;
        }
        case CK_STEP_SHORTCUT: shortcut(st, buf[st->input], out); break;
        case CK_STEP_BMAXPOOL: ck_bmaxpool2d_run(buf[st->input], &st->shape, bits, threads); break;
        case CK_STEP_GLOBAL_AVGPOOL: global_avgpool(st, buf[st->input], out); break;
        case CK_STEP_LINEAR: linear(st, p->transposed[i], buf[st->input], out, threads); break;
        case CK_STEP_MAXPOOL_F32: maxpool_f32(st, buf[st->input], out, bits, threads); break;
        case CK_STEP_AVGPOOL_F32: avgpool_f32(st, buf[st->input], out, bits); break;
        case CK_STEP_AFFINE:
            transform_pixels(st, st->shape.height * st->shape.width, st->shape.channels, buf[st->input], residual, out,
                             bits);
            break;
        }
        if (times != NULL) times[i] += now_seconds() - started;
    }
    memcpy(result, buf[p->result], (size_t)p->output_floats * sizeof(float));
    return CK_OK;
}

ck_status ck_program_run(ck_program *p, const float *images, int64_t n, float *out) {
    if (p == NULL || images == NULL || out == NULL) return CK_ERR_NULL_POINTER;
    if (!ck_size_ok(n)) return CK_ERR_INVALID_SIZE;
    const int threads = ck_get_num_threads();
    ck_status status = plan(p, threads);
    if (status != CK_OK) return status;
    if (p->profile != NULL) {
        if (n != p->profile_batch) profile_flush(p);
        p->profile_batch = n;
        p->profile_images += n;
    }
    if (n < threads || threads == 1) {
        const int split = threads > 1 ? split_policy(p) : 1;
        const double started = threads > 1 ? now_seconds() : 0.0;
        for (int64_t i = 0; i < n && status == CK_OK; i++)
            status = run_image(p, images + i * p->input_floats, out + i * p->output_floats, p->memory[0],
                               split ? threads : 1, p->profile);
        if (threads > 1) {
            split_record(p, split, (now_seconds() - started) / (double)n);
            p->split_used[split] += n;
        }
        return status;
    }
    _Atomic int64_t next = 0;
    _Atomic int failed = CK_OK;
#pragma omp parallel num_threads(threads)
    {
        char *mem = p->memory[omp_get_thread_num()];
        double *times = p->profile != NULL ? p->profile + (size_t)omp_get_thread_num() * (size_t)p->count : NULL;
        for (int64_t i = atomic_fetch_add(&next, 1); i < n; i = atomic_fetch_add(&next, 1)) {
            ck_status s = run_image(p, images + i * p->input_floats, out + i * p->output_floats, mem, 1, times);
            if (s != CK_OK) atomic_store(&failed, (int)s);
        }
    }
    return (ck_status)atomic_load(&failed);
}
