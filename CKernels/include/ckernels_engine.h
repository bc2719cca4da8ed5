/*
 * ckernels_engine.h — runs a packed network: a fixed list of kernel steps over planned buffers, with
 * OpenMP across the images of a batch (each thread keeps its image in cache through consecutive layers)
 * or, for fewer images than threads, within each layer. Included by ckernels.h; same conventions.
 * The steps say nothing about which network they form: the caller (BNN's packed engine) builds them.
 */
#ifndef CKERNELS_ENGINE_H
#define CKERNELS_ENGINE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Input channels up to which CK_STEP_CONV_F32 adds its products as ck_conv2d_direct_f32 (each product rounded,
 * then added); above, as ck_conv2d_forward_f32 (fused multiply-adds). A training graph whose float convolutions
 * call the same kernel on the same side of this bound computes the engine's floats exactly.
 */
enum { CK_CONV_F32_DIRECT_CHANNELS = 4 };

/**
 * What a step of a program computes. Per-image tensors are NHWC; "bits" are the packed signs of floats (bit 1 =
 * negative, so 0, −0 and NaN pack as +1), ck_words(C) words per pixel, bit j of word w for channel 64·w + j.
 * "The transform" is the one described at ck_step, applied per output channel. Values given for kinds added
 * later keep the earlier ones stable.
 */
typedef enum ck_step_kind {
    /** Float convolution of a float buffer `[H, W, C]` (geometry in `shape`) with `weights` as OHWI rows
     *  (`out_channels` rows of kernel_h·kernel_w·C floats), zero padding, then the transform. With
     *  C ≤ CK_CONV_F32_DIRECT_CHANNELS the products are added as ck_conv2d_direct_f32 adds them, otherwise as
     *  ck_conv2d_forward_f32 (accumulate = 0) does: the same floats on every ISA path and thread count. */
    CK_STEP_CONV_F32 = 0,
    /** Binary convolution of a bits buffer (ck_bconv2d: exact integers, zero padding), then the transform. */
    CK_STEP_BCONV = 1,
    /** Strided subsample with centred zero channels: out[y][x][pad + c] = in[y·s][x·s][c] for s = stride_h
     *  (= stride_w), pad = (out_channels − C)/2 (even difference required), zeros in the other channels; the
     *  output is ⌈H/s⌉ × ⌈W/s⌉ × out_channels floats. Kernel and padding are not read. */
    CK_STEP_SHORTCUT = 2,
    /** Binary max-pool of a bits buffer (ck_bmaxpool2d); writes bits only. 2·pad ≤ kernel in each dimension. */
    CK_STEP_BMAXPOOL = 3,
    /** Mean over H×W of a float buffer as ck_global_avgpool_forward_f32 (each channel summed in double over the
     *  pixels in raster order, the mean rounded once to float), then ·scale[c] and + bias[c] as two float
     *  operations where given: a 1×1×C float buffer. */
    CK_STEP_GLOBAL_AVGPOOL = 4,
    /** out[o] = (Σ_i weights[o][i]·x[i], added in order i = 0, 1, …) + bias[o], over any float buffer of
     *  shape.channels floats in NHWC order (an `[H, W, C]` buffer with H·W·C = channels: flattening is free; a
     *  caller that wants PyTorch's NCHW flatten order permutes the weight columns). A 1×1×out_channels buffer. */
    CK_STEP_LINEAR = 5,
    /** Max-pool of a float buffer as ck_maxpool2d_forward_f32 (padding counts as −∞; NaN propagates;
     *  2·pad ≤ kernel in each dimension): floats and/or their bits. */
    CK_STEP_MAXPOOL_F32 = 6,
    /** Average pool of a float buffer as ck_avgpool2d_forward_f32, the same floats (real pixels of the window
     *  added in raster order from 0, then one division by kernel_h·kernel_w: zero padding counts in the divisor,
     *  PyTorch's count_include_pad; 2·pad ≤ kernel): floats and/or their bits. */
    CK_STEP_AVGPOOL_F32 = 7,
    /** The transform alone, on a float buffer of shape.height × width × channels (kernel, stride and padding not
     *  read): a batch norm (scale, bias) after a pool, a ReLU, a residual add after a step without a transform,
     *  or the sign bits of a float buffer. Floats and/or bits, same shape. */
    CK_STEP_AFFINE = 8
} ck_step_kind;

/**
 * One step. Buffers are numbered from 0 to 63; buffer 0 holds the input images (float) and is never written. The
 * transform (CONV_F32, BCONV and AFFINE) maps each value x (the convolution's sum, or the input value) of output
 * channel o, in this order of float operations:
 *   v = x·prescale[o]                     (skipped without prescale)
 *   v = max(v, 0) if CK_RELU_BEFORE        (written v < 0 ? 0 : v: NaN stays NaN)
 *   y = v·scale[o]                         (skipped without scale)
 *   y = y + bias[o]                        (skipped without bias)
 *   y = y + residual[p][o]                 (skipped without residual)
 *   y = max(y, 0) if CK_RELU_AFTER
 * — the order of a network that computes α·conv, ReLU, batch norm (x·scale + shift) and the residual add as
 * separate float operations, so a packed network reproduces it bit for bit. A skipped part changes nothing (as a
 * training op that is absent), except that BCONV and CONV_F32 of few channels add +0 for a missing bias or
 * residual (a −0 becomes +0, which no comparison or sign bit sees). Fields a kind does not read must be NULL, 0
 * or −1 (else CK_ERR_SHAPE_MISMATCH): flags, prescale and residual belong to the transform, scale to it and
 * GLOBAL_AVGPOOL, bias to those and LINEAR, weights to CONV_F32 and LINEAR, binary_weights to BCONV, output_bits
 * to the transform and the pools.
 */
typedef struct ck_step {
    ck_step_kind kind;
    ck_conv_shape shape;       /**< per-image input geometry (batch must be 1); for LINEAR only `channels` */
    int64_t out_channels;      /**< CONV_F32, BCONV, SHORTCUT and LINEAR outputs; not read by the others */
    const float *weights;      /**< CONV_F32 (OHWI rows) and LINEAR (`out_channels` rows of `channels`) */
    const ck_bconv_weights *binary_weights; /**< BCONV */
    const float *prescale;     /**< per output channel, multiplies x first (NULL: none) */
    const float *scale, *bias; /**< per output channel (NULL: none) */
    int flags;                 /**< CK_RELU_BEFORE | CK_RELU_AFTER, steps with the transform */
    int input;                 /**< buffer read: float, or bits for BCONV and BMAXPOOL */
    int residual;              /**< float buffer of the output's shape added in the transform, or −1 */
    int output;                /**< float buffer written, or −1 (BMAXPOOL: always −1) */
    int output_bits;           /**< bits buffer written (transform steps and pools), or −1 */
} ck_step;

/** A validated list of steps with its buffers planned; reusable, one run at a time. */
typedef struct ck_program ck_program;

/**
 * Checks the steps (every buffer read was written before, with the same kind and size; shapes chain) and
 * plans buffers. The program keeps pointers to weights, scales and biases: they must outlive it. The
 * result is the float buffer written by the last step.
 */
ck_status ck_program_create(const ck_step *steps, int count, ck_program **out);

/** Same, and on failure stores in `*failed_step` (if not NULL) the index of the step found invalid. */
ck_status ck_program_create_checked(const ck_step *steps, int count, ck_program **out, int *failed_step);

/** Releases a program (NULL is allowed). */
void ck_program_destroy(ck_program *program);

/** Floats per image of the program's input (buffer 0) and of its result. */
ck_status ck_program_sizes(const ck_program *program, int64_t *input_floats, int64_t *output_floats);

/**
 * Runs `images` (n × input floats, NHWC) and writes n × output floats to `out`. With n ≥ threads each
 * thread takes whole images; otherwise images run one after another, each layer large enough split among the
 * threads — or, when that is slower, all on one thread: a layer split across a core that another process holds
 * waits for it at every barrier, so the program times both ways (the least time of its recent calls each way,
 * the slower way retried now and then) and runs the faster. The results are the same either way. The
 * environment variable CK_SPLIT_LAYERS=1 (always split) or 0 (one thread), read when the program is created,
 * fixes the choice. Buffers are allocated at the first run with a given thread count and reused.
 *
 * Profiling (a debug aid): with the environment variable CK_PROFILE_STEPS set (not "0") when the program is
 * created, each step is timed and the sums are printed to stderr, per step and per step kind (ms per image, share,
 * multiply-adds per second for convolutions), when the batch size changes, the thread count changes or the program
 * is destroyed. With threads across images the times are thread time (divide by the threads for wall time).
 */
ck_status ck_program_run(ck_program *program, const float *images, int64_t n, float *out);

/**
 * Direct float convolution of a batch of NHWC images with weights as OHWI rows (`out_channels` rows of
 * kernel_h·kernel_w·C), products added in the order the packed engine's conv step adds them, so a network
 * trained with it and its packed form compute the same floats. For layers with few input channels (stems).
 */
ck_status ck_conv2d_direct_f32(const float *input, const ck_conv_shape *shape, const float *weight_rows,
                               int64_t out_channels, float *out);

#ifdef __cplusplus
}
#endif

#endif /* CKERNELS_ENGINE_H */
