/*
 * bnn_model_file.h — the reader beneath bnn_inference.h: safetensors files, packed models (.bnn) and the
 * kernel program built from one.
 *
 * A C program that only classifies needs bnn_inference.h alone. This header is for the package's own Swift
 * module (its PackedModel, PackedEngine and SafeTensors reader call these functions, so files are parsed and
 * validated once, here) and for tools that want to look inside a file.
 *
 * Files are untrusted: every size is checked with overflow-checked arithmetic against the bytes present and
 * against fixed caps, nothing is read out of bounds, and a bad file gives a status and a message, never an
 * abort. Parsing allocates at most the file's bytes (packed models keep one copy) plus a fixed multiple of the
 * header's length. Every function is reentrant (no static scratch); results are immutable and may be read
 * from several threads.
 *
 * Status codes are bnn_inference.h's (BNN_OK, BNN_IO_ERROR, BNN_INVALID_MODEL, ...). Messages are returned as
 * NUL-terminated strings allocated with malloc, which the caller releases with free(); a message is NULL only
 * when memory ran out while writing it.
 */
#ifndef BNN_MODEL_FILE_H
#define BNN_MODEL_FILE_H

#include "bnn_inference.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------- */
/* Safetensors                                                                                      */

/** Element types of the safetensors format, in the order of their names in bnn_dtype_name. */
typedef enum bnn_dtype {
    BNN_DTYPE_BOOL = 0,
    BNN_DTYPE_U8 = 1,
    BNN_DTYPE_I8 = 2,
    BNN_DTYPE_F8_E5M2 = 3,
    BNN_DTYPE_F8_E4M3 = 4,
    BNN_DTYPE_I16 = 5,
    BNN_DTYPE_U16 = 6,
    BNN_DTYPE_F16 = 7,
    BNN_DTYPE_BF16 = 8,
    BNN_DTYPE_I32 = 9,
    BNN_DTYPE_U32 = 10,
    BNN_DTYPE_F32 = 11,
    BNN_DTYPE_F64 = 12,
    BNN_DTYPE_I64 = 13,
    BNN_DTYPE_U64 = 14
} bnn_dtype;

/** The format's name of a dtype ("F32", ...), or "?" for a value outside the enum. */
const char *bnn_dtype_name(bnn_dtype dtype);

/** Bytes per element of a dtype (1, 2, 4 or 8), or 0 for a value outside the enum. */
int bnn_dtype_size(bnn_dtype dtype);

/** Bytes of text: `length` bytes at `bytes`, followed by a NUL (the text itself may hold NULs). */
typedef struct bnn_text_view {
    const char *bytes;
    size_t length;
} bnn_text_view;

/** One tensor of a parsed file. `data` points into the bytes that were parsed (no alignment is promised). */
typedef struct bnn_tensor_view {
    bnn_text_view name;   /**< valid UTF-8 */
    bnn_dtype dtype;
    int64_t rank;         /**< number of dimensions (0 for a scalar) */
    const int64_t *shape; /**< `rank` non-negative dimensions */
    const uint8_t *data;  /**< the elements, little-endian, row-major */
    size_t size;          /**< bytes at `data` = product(shape) × element size */
    size_t offset;        /**< where `data` starts in the data buffer (after the header) */
} bnn_tensor_view;

/** One `__metadata__` entry (both valid UTF-8). */
typedef struct bnn_metadata_entry {
    bnn_text_view key, value;
} bnn_metadata_entry;

/** A parsed and validated safetensors file. */
typedef struct bnn_safetensors {
    size_t tensor_count;
    const bnn_tensor_view *tensors; /**< ordered by data offset (then end, then header order) */
    size_t metadata_count;
    const bnn_metadata_entry *metadata; /**< in header order; keys are unique */
    size_t header_length;               /**< bytes of JSON after the 8-byte length */
} bnn_safetensors;

/** Why a safetensors file was refused: the tensor at fault (or NULL) and the reason; both malloc'd. */
typedef struct bnn_safetensors_error {
    char *tensor;
    char *reason;
} bnn_safetensors_error;

/** Headers longer than this are refused (the reference implementation's limit). */
#define BNN_SAFETENSORS_MAX_HEADER ((size_t)100000000)

/**
 * Parses and validates the `size` bytes of a safetensors file: the 8-byte little-endian header length, the
 * JSON header (strict: duplicate keys, unknown fields, invalid UTF-8 and nesting deeper than 64 are errors),
 * each tensor's dtype, shape and byte range, and that the tensors cover the data buffer exactly, without
 * overlap or hole. The result's views point into `bytes`, which must outlive it; release it with
 * bnn_safetensors_free. On failure returns BNN_INVALID_MODEL (BNN_INVALID_ARGUMENT for NULL pointers,
 * BNN_RUN_FAILED if memory ran out), stores NULL in `*out` and, if `error` is not NULL, fills it (release with
 * bnn_safetensors_error_clear).
 */
int bnn_safetensors_parse(const uint8_t *bytes, size_t size, bnn_safetensors **out, bnn_safetensors_error *error);

/** Releases a parsed file (NULL is allowed). */
void bnn_safetensors_free(bnn_safetensors *file);

/** Frees the strings of an error and sets them to NULL (NULL is allowed). */
void bnn_safetensors_error_clear(bnn_safetensors_error *error);

/* ---------------------------------------------------------------------------------------------- */
/* Packed models                                                                                    */

/** What a layer of a packed network computes (the `op` names of the file in comments). */
typedef enum bnn_op {
    BNN_OP_CONV = 0,           /**< "conv": float convolution; tensors weight, scale, bias */
    BNN_OP_BCONV = 1,          /**< "bconv": binary convolution; tensors bits, prescale, scale, bias */
    BNN_OP_SHORTCUT = 2,       /**< "shortcut": option-A shortcut; no tensors */
    BNN_OP_BMAXPOOL = 3,       /**< "bmaxpool": max-pool of sign bits; no tensors */
    BNN_OP_MAXPOOL = 4,        /**< "maxpool": float max-pool; no tensors */
    BNN_OP_AVGPOOL = 5,        /**< "avgpool": float average pool; no tensors */
    BNN_OP_AFFINE = 6,         /**< "affine": the output transform alone; tensors scale, bias */
    BNN_OP_GLOBAL_AVGPOOL = 7, /**< "global_avgpool": mean over the pixels, then scale, bias */
    BNN_OP_LINEAR = 8          /**< "linear": fully connected; tensors weight, bias */
} bnn_op;

/** The file's name of an op ("conv", ...), or "?" for a value outside the enum. */
const char *bnn_op_name(bnn_op op);

/** Buffers are numbered 0 ... BNN_MAX_BUFFER (0 is the input image). */
#define BNN_MAX_BUFFER 63
/** Largest height, width, channel count, kernel, stride or padding a layer may declare. */
#define BNN_MAX_LAYER_SIZE ((int64_t)1 << 24)
/** Largest per-image tensor (values) a layer may read or write, bounding the engine's buffers. */
#define BNN_MAX_IMAGE_VALUES ((int64_t)1 << 26)
/** Largest height, width or channel count of the graph's input. */
#define BNN_MAX_INPUT_SIZE ((int64_t)1 << 20)
/** Most layers a graph may have. */
#define BNN_MAX_LAYERS 10000

/** One layer of a packed network, as the file's graph describes it. Absent optional fields are −1. */
typedef struct bnn_layer {
    bnn_text_view name; /**< prefix of the layer's tensors (`<name>.weight`, ...) */
    bnn_op op;
    int input;          /**< buffer read */
    int residual;       /**< buffer added in the transform, or −1 */
    int output;         /**< float buffer written, or −1 */
    int output_bits;    /**< sign-bits buffer written, or −1 */
    int64_t height, width, channels; /**< input geometry per image */
    int64_t out_channels;
    int64_t kernel, stride, padding; /**< −1 when absent (then 1, 1 and 0) */
    int relu_before, relu_after;     /**< 1 true, 0 false, −1 absent (false) */
    int tensor_count;                /**< the layer's tensors, in the order of its op's list above */
    const bnn_tensor_view *tensors[4];
} bnn_layer;

/** A parsed and validated packed model: metadata, graph and tensors. */
typedef struct bnn_packed_model {
    bnn_text_view version;  /**< "1" or "2" */
    bnn_text_view model;    /**< the network's name (informative) */
    bnn_text_view variant;  /**< e.g. "1w1a"; bytes NULL when absent (version-1 files) */
    int64_t input[3];       /**< height, width, channels of one image (NHWC) */
    int64_t classes;        /**< logits per image */
    size_t layer_count;
    const bnn_layer *layers;  /**< in execution order */
    const bnn_safetensors *file; /**< every tensor; each belongs to exactly one layer */
    bnn_text_view graph_text;    /**< the graph's JSON as stored */
} bnn_packed_model;

/**
 * Parses and validates a packed model held in memory: a safetensors file (see bnn_safetensors_parse) whose
 * `__metadata__` holds format "swift-bnn-packed", version "1" or "2", `graph` (JSON: model, variant, input,
 * classes, layers) and `checksum` ("fnv1a64:" and 16 hex digits of FNV-1a over the graph text, then each tensor
 * in the byte order of the names: name, dtype name, the shape's decimal dimensions joined by ",", the bytes).
 * Every layer is checked: its op, buffers (0 ... BNN_MAX_BUFFER), sizes (BNN_MAX_LAYER_SIZE,
 * BNN_MAX_IMAGE_VALUES) and the dtype and shape of each tensor it needs; every tensor must belong to a layer.
 * The bytes are copied: the result does not refer to `bytes`. `label` names the file in messages ("<memory>"
 * if NULL). On failure returns BNN_INVALID_MODEL (BNN_INVALID_ARGUMENT, BNN_RUN_FAILED as above), stores NULL
 * in `*out` and, if `message` is not NULL, a malloc'd message naming the file, layer and tensor at fault.
 */
int bnn_packed_model_parse(const uint8_t *bytes, size_t size, const char *label, bnn_packed_model **out,
                           char **message);

/**
 * Reads the file at `path` (a regular file, read whole with POSIX calls) and parses it as
 * bnn_packed_model_parse does. BNN_IO_ERROR if it cannot be opened or read.
 */
int bnn_packed_model_read(const char *path, bnn_packed_model **out, char **message);

/** Releases a packed model (NULL is allowed). */
void bnn_packed_model_free(bnn_packed_model *model);

/* ---------------------------------------------------------------------------------------------- */
/* The kernel program of a packed model                                                            */

/** A packed model compiled into CKernels steps (ck_program), ready to run. Owns copies of what it needs. */
typedef struct bnn_packed_program bnn_packed_program;

/**
 * Builds the kernel steps of `model` (binary weights packed into kernel panels, float tensors copied into
 * aligned memory) and checks their wiring with ck_program_create_checked: every buffer read must be written
 * by an earlier layer with the kind and shape the reader expects, every window must fit, and the program's
 * input and output sizes must be the graph's. The program does not refer to `model` afterwards. On failure
 * returns BNN_INVALID_MODEL (BNN_RUN_FAILED if memory ran out) with a message naming the layer.
 */
int bnn_packed_program_create(const bnn_packed_model *model, bnn_packed_program **out, char **message);

/** Releases a program (NULL is allowed). */
void bnn_packed_program_destroy(bnn_packed_program *program);

/** Floats per input image (NHWC) and logits per image of a program; either pointer may be NULL. */
void bnn_packed_program_sizes(const bnn_packed_program *program, int64_t *input_floats, int64_t *classes);

/**
 * Runs `n` ≥ 1 images (`n` × input floats) into `n` × classes logits. Runs of one program are serialised (a
 * mutex); use one program per thread to run in parallel. BNN_INVALID_ARGUMENT for NULL pointers, n < 1 or a
 * count whose sizes overflow; BNN_RUN_FAILED if the kernels fail (the message says why).
 */
int bnn_packed_program_run(bnn_packed_program *program, const float *images, int64_t n, float *logits,
                           char **message);

#ifdef __cplusplus
}
#endif

#endif /* BNN_MODEL_FILE_H */
