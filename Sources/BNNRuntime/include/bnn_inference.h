/*
 * bnn_inference.h — run packed binary networks (.bnn files written by `bnn export`) from C.
 *
 * Link against the BNNInference static library (`swift build --product BNNInference` builds
 * libBNNInference.a): C11 throughout (the reader of .bnn files and its checks, the kernel program, the kernels),
 * needing only OpenMP and libc at run time, no Swift runtime:
 *     cc -I Sources/BNNRuntime/include prog.c -L <bin> -lBNNInference -l:libomp.so.5 -ldl -lm -lpthread
 * (see Examples/c/build.sh). bnn_model_file.h, beside this header, is the reader underneath.
 *
 * Conventions:
 * - Functions that can fail return a status: BNN_OK (0) or one of the codes below. They never abort on bad
 *   input (NULL pointers, counts below 1, unreadable, truncated or corrupted files); the reason is then
 *   available from bnn_last_error() on the same thread.
 * - Images are float32, NHWC (image after image, pixel after pixel, channels innermost), already
 *   normalised the way the network was trained (CIFAR-10 in this project: x/255, then minus the mean
 *   (0.485, 0.456, 0.406) and divided by the std (0.229, 0.224, 0.225) per RGB channel).
 * - A model may be used from several threads; its runs are then serialised. Open the file once per thread
 *   to run batches in parallel. The kernels themselves use OpenMP threads (see bnn_set_threads).
 * - Every function is reentrant (no static scratch memory); the last error is kept per thread.
 */
#ifndef BNN_INFERENCE_H
#define BNN_INFERENCE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Status codes returned by the functions below. */
enum {
    BNN_OK = 0,
    /** A NULL pointer, a count below 1, or sizes whose product overflows. */
    BNN_INVALID_ARGUMENT = 1,
    /** The file cannot be opened or read. */
    BNN_IO_ERROR = 2,
    /** The file is not a packed model, is truncated or corrupted, has an unsupported version, or its layers
        do not fit together. */
    BNN_INVALID_MODEL = 3,
    /** The kernels failed while running (for example, memory could not be allocated). */
    BNN_RUN_FAILED = 4,
};

/** An opened packed model, ready to run. */
typedef struct bnn_model bnn_model;

/**
 * Reads and checks the packed model at `path` and prepares it to run. On success stores the model in
 * `*out` (release it with bnn_model_close); on failure stores NULL (if `out` is not NULL) and returns the
 * reason's code.
 */
int bnn_model_open(const char *path, bnn_model **out);

/** Floats per input image (height × width × channels), or -1 if `model` is NULL. */
int64_t bnn_model_input_size(const bnn_model *model);

/** The input image's height, width and channels (NHWC); any output pointer may be NULL. */
int bnn_model_input_shape(const bnn_model *model, int64_t *height, int64_t *width, int64_t *channels);

/** Logits per image (the number of classes), or -1 if `model` is NULL. */
int64_t bnn_model_classes(const bnn_model *model);

/**
 * Runs `n` images (`n` × bnn_model_input_size floats at `images_nhwc`) and writes `n` × bnn_model_classes
 * logits to `logits`, image after image. The arrays must hold that many floats; nothing is written on
 * failure.
 */
int bnn_model_run(bnn_model *model, const float *images_nhwc, int64_t n, float *logits);

/** Releases a model opened by bnn_model_open (NULL is allowed). */
void bnn_model_close(bnn_model *model);

/**
 * Why the last call on the calling thread that returned a status failed, naming the file, layer or argument
 * at fault; "" if that call succeeded or none was made. The text stays valid until the next call of this API on
 * the same thread.
 */
const char *bnn_last_error(void);

/** A fixed description of a status code ("invalid argument", ...); never NULL. */
const char *bnn_status_message(int status);

/** Sets the number of OpenMP threads the kernels use (1 ... 4096) for the whole process. */
int bnn_set_threads(int threads);

#ifdef __cplusplus
}
#endif

#endif /* BNN_INFERENCE_H */
