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

/** What a step of a program computes. Per-image tensors are NHWC. */
typedef enum ck_step_kind {
    CK_STEP_CONV_F32 = 0,       /**< float conv of a float buffer, weights [out][kh][kw][C], output transform */
    CK_STEP_BCONV = 1,          /**< binary conv of a bits buffer (ck_bconv2d), output transform */
    CK_STEP_SHORTCUT = 2,       /**< every stride-th pixel of a float buffer, channels zero-padded to out_channels
                                     (centred: (out − C)/2 zero channels before) */
    CK_STEP_BMAXPOOL = 3,       /**< binary max-pool of a bits buffer (ck_bmaxpool2d) */
    CK_STEP_GLOBAL_AVGPOOL = 4, /**< mean over H×W of a float buffer, then ·scale + bias if given: C floats */
    CK_STEP_LINEAR = 5          /**< out[o] = Σ_i weights[o][i]·x[i] + bias[o] over a float buffer of C floats */
} ck_step_kind;

/**
 * One step. Buffers are numbered from 0; buffer 0 holds the input images (float). Conv steps write
 *   y = max(acc·prescale, floor)·scale + bias (+ residual), then max(y, 0) if CK_RELU_AFTER,
 * where floor is 0 with CK_RELU_BEFORE and −∞ otherwise — the order of operations of a network that
 * computes α·conv, ReLU, batch norm and the residual add, so a packed network can reproduce it bit for bit.
 */
typedef struct ck_step {
    ck_step_kind kind;
    ck_conv_shape shape;       /**< per-image input geometry (batch must be 1); for LINEAR only `channels` */
    int64_t out_channels;      /**< conv, shortcut, linear outputs; ignored for pools */
    const float *weights;      /**< CONV_F32 and LINEAR */
    const ck_bconv_weights *binary_weights; /**< BCONV */
    const float *prescale;     /**< BCONV: multiplies the integer before CK_RELU_BEFORE (NULL: 1), see below */
    const float *scale, *bias; /**< per output channel (NULL: 1, 0); LINEAR uses `bias` only */
    int flags;                 /**< CK_RELU_BEFORE | CK_RELU_AFTER, conv steps */
    int input;                 /**< buffer read: float, or bits for BCONV and BMAXPOOL */
    int residual;              /**< float buffer added in the conv transform, or −1 */
    int output;                /**< float buffer written, or −1 */
    int output_bits;           /**< bits buffer written (conv steps, BMAXPOOL), or −1 */
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
 * thread takes whole images; otherwise images run one after another with the threads inside each layer.
 * Buffers are allocated at the first run with a given thread count and reused.
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
