/* program.c — a packed model's layers as CKernels steps (ck_program). The kernels know nothing of files or
 * networks: this is where the file's layers become the generic steps of ckernels_engine.h.
 *
 * The program owns everything the steps point to: float tensors are copied into aligned memory (a file's tensor
 * may sit at any byte offset, and a float must not be read from a misaligned address) and decoded from
 * little-endian explicitly, binary weights are packed into kernel panels by ck_bconv_weights_create_from_bits.
 * The model can be released once the program exists. */
#include "runtime_internal.h"

#include "ckernels.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct bnn_packed_program {
    ck_program *program;
    ck_bconv_weights **binary; /* one per layer, NULL for layers without binary weights */
    size_t layer_count;
    float *floats;             /* every float tensor the steps read, back to back */
    int64_t input_floats, classes;
    pthread_mutex_t lock;      /* ck_program_run plans and reuses buffers: one run at a time */
};

void bnn_packed_program_destroy(bnn_packed_program *program) {
    if (program == NULL) return;
    ck_program_destroy(program->program);
    if (program->binary != NULL)
        for (size_t i = 0; i < program->layer_count; i++) ck_bconv_weights_destroy(program->binary[i]);
    free(program->binary);
    free(program->floats);
    pthread_mutex_destroy(&program->lock);
    free(program);
}

static uint32_t little_endian_32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t little_endian_64(const uint8_t *p) {
    return (uint64_t)little_endian_32(p) | (uint64_t)little_endian_32(p + 4) << 32;
}

/* Copies a F32 tensor (validated by the reader) into `*cursor` and advances it. */
static const float *copy_floats(const bnn_tensor_view *tensor, float **cursor) {
    float *out = *cursor;
    const size_t count = tensor->size / 4;
    for (size_t i = 0; i < count; i++) {
        const uint32_t bits = little_endian_32(tensor->data + 4 * i);
        memcpy(&out[i], &bits, sizeof bits);
    }
    *cursor += count;
    return out;
}

/* The layer's tensor with this suffix (the reader found them all). */
static const bnn_tensor_view *tensor_of(const bnn_layer *layer, const char *suffix) {
    const size_t n = strlen(suffix);
    for (int i = 0; i < layer->tensor_count; i++) {
        const bnn_text_view name = layer->tensors[i]->name;
        if (name.length == layer->name.length + 1 + n && memcmp(name.bytes + layer->name.length + 1, suffix, n) == 0)
            return layer->tensors[i];
    }
    return NULL;
}

static void layer_prefix(bnn_text *error, const bnn_layer *layer) {
    bnn_text_printf(error, "layer \"");
    bnn_text_quote(error, layer->name.bytes, layer->name.length);
    bnn_text_printf(error, "\"");
}

static int build(const bnn_packed_model *model, bnn_packed_program *p, bnn_text *error) {
    const size_t count = model->layer_count;
    if (count == 0 || count > BNN_MAX_LAYERS || model->layers == NULL) {
        bnn_text_printf(error, "graph: %zu layers (1...%d expected)", count, BNN_MAX_LAYERS);
        return BNN_INVALID_MODEL;
    }
    size_t float_bytes = 0;
    for (size_t i = 0; i < count; i++)
        for (int t = 0; t < model->layers[i].tensor_count; t++)
            if (model->layers[i].tensors[t]->dtype == BNN_DTYPE_F32) float_bytes += model->layers[i].tensors[t]->size;
    p->floats = malloc(float_bytes > 0 ? float_bytes : sizeof(float));
    p->binary = calloc(count, sizeof *p->binary);
    ck_step *steps = calloc(count, sizeof *steps);
    int status = BNN_RUN_FAILED;
    if (p->floats == NULL || p->binary == NULL || steps == NULL) {
        bnn_text_printf(error, "out of memory while preparing %zu layers", count);
        goto done;
    }
    p->layer_count = count;
    float *cursor = p->floats;
    status = BNN_INVALID_MODEL;
    for (size_t i = 0; i < count; i++) {
        const bnn_layer *layer = &model->layers[i];
        ck_step *step = &steps[i];
        const int64_t k = layer->kernel < 0 ? 1 : layer->kernel, stride = layer->stride < 0 ? 1 : layer->stride;
        const int64_t padding = layer->padding < 0 ? 0 : layer->padding;
        step->shape = (ck_conv_shape){.batch = 1, .height = layer->height, .width = layer->width,
                                      .channels = layer->channels, .kernel_h = k, .kernel_w = k, .stride_h = stride,
                                      .stride_w = stride, .pad_h = padding, .pad_w = padding};
        step->out_channels = layer->out_channels;
        step->flags = (layer->relu_before == 1 ? CK_RELU_BEFORE : 0) | (layer->relu_after == 1 ? CK_RELU_AFTER : 0);
        step->input = layer->input;
        step->residual = layer->residual;
        step->output = layer->output;
        step->output_bits = layer->output_bits;
        const bnn_tensor_view *scale = tensor_of(layer, "scale"), *bias = tensor_of(layer, "bias");
        switch (layer->op) {
        case BNN_OP_CONV:
            step->kind = CK_STEP_CONV_F32;
            step->weights = copy_floats(tensor_of(layer, "weight"), &cursor);
            break;
        case BNN_OP_BCONV: {
            step->kind = CK_STEP_BCONV;
            const bnn_tensor_view *bits = tensor_of(layer, "bits");
            /* The file's words may be misaligned and are little-endian: decode them into aligned memory. */
            const size_t words = bits->size / 8;
            uint64_t *aligned = malloc(words > 0 ? words * sizeof(uint64_t) : sizeof(uint64_t));
            if (aligned == NULL) {
                layer_prefix(error, layer);
                bnn_text_printf(error, ": out of memory for its %zu binary weight words", words);
                status = BNN_RUN_FAILED;
                goto done;
            }
            for (size_t w = 0; w < words; w++) aligned[w] = little_endian_64(bits->data + 8 * w);
            const ck_status packed = ck_bconv_weights_create_from_bits(aligned, layer->out_channels, layer->channels,
                                                                       k, k, &p->binary[i]);
            free(aligned);
            if (packed != CK_OK) {
                layer_prefix(error, layer);
                bnn_text_printf(error, ": packing the binary weights: %s", ck_status_message(packed));
                status = packed == CK_ERR_OUT_OF_MEMORY ? BNN_RUN_FAILED : BNN_INVALID_MODEL;
                goto done;
            }
            step->binary_weights = p->binary[i];
            step->prescale = copy_floats(tensor_of(layer, "prescale"), &cursor);
            break;
        }
        case BNN_OP_SHORTCUT: step->kind = CK_STEP_SHORTCUT; break;
        case BNN_OP_BMAXPOOL: step->kind = CK_STEP_BMAXPOOL; break;
        case BNN_OP_MAXPOOL: step->kind = CK_STEP_MAXPOOL_F32; break;
        case BNN_OP_AVGPOOL: step->kind = CK_STEP_AVGPOOL_F32; break;
        case BNN_OP_AFFINE: step->kind = CK_STEP_AFFINE; break;
        case BNN_OP_GLOBAL_AVGPOOL: step->kind = CK_STEP_GLOBAL_AVGPOOL; break;
        case BNN_OP_LINEAR:
            step->kind = CK_STEP_LINEAR;
            step->weights = copy_floats(tensor_of(layer, "weight"), &cursor);
            break;
        default:
            layer_prefix(error, layer);
            bnn_text_printf(error, ": op %d is not a known op", (int)layer->op);
            goto done;
        }
        if (scale != NULL) step->scale = copy_floats(scale, &cursor);
        if (bias != NULL) step->bias = copy_floats(bias, &cursor);
    }

    int failed = -1;
    const ck_status created = ck_program_create_checked(steps, (int)count, &p->program, &failed);
    if (created != CK_OK) {
        if (created == CK_ERR_OUT_OF_MEMORY) {
            bnn_text_printf(error, "out of memory while planning the program");
            status = BNN_RUN_FAILED;
            goto done;
        }
        const bnn_layer *layer = &model->layers[failed < 0 ? 0 : (size_t)failed < count ? (size_t)failed : count - 1];
        layer_prefix(error, layer);
        bnn_text_printf(error,
                        " (%s): %s — its buffers must be written by earlier layers with the shape it reads, and its "
                        "window must fit",
                        bnn_op_name(layer->op), ck_status_message(created));
        goto done;
    }
    ck_program_sizes(p->program, &p->input_floats, &p->classes);
    const int64_t declared = model->input[0] * model->input[1] * model->input[2];
    if (p->input_floats != declared || p->classes != model->classes) {
        bnn_text_printf(error,
                        "graph: the layers read %lld floats per image and produce %lld, but the graph declares input "
                        "[%lld, %lld, %lld] (%lld) and %lld classes",
                        (long long)p->input_floats, (long long)p->classes, (long long)model->input[0],
                        (long long)model->input[1], (long long)model->input[2], (long long)declared,
                        (long long)model->classes);
        goto done;
    }
    status = BNN_OK;
done:
    free(steps);
    return status;
}

int bnn_packed_program_create(const bnn_packed_model *model, bnn_packed_program **out, char **message) {
    if (message != NULL) *message = NULL;
    if (out != NULL) *out = NULL;
    bnn_text error = {0};
    int status = BNN_INVALID_ARGUMENT;
    bnn_packed_program *p = NULL;
    if (model == NULL || out == NULL) {
        bnn_text_printf(&error, "bnn_packed_program_create: %s is NULL", model == NULL ? "model" : "out");
        goto done;
    }
    p = calloc(1, sizeof *p);
    if (p == NULL || pthread_mutex_init(&p->lock, NULL) != 0) {
        free(p);
        p = NULL;
        bnn_text_printf(&error, "out of memory while preparing the program");
        status = BNN_RUN_FAILED;
        goto done;
    }
    status = build(model, p, &error);
    if (status == BNN_OK) {
        *out = p;
        p = NULL;
    }
done:
    bnn_packed_program_destroy(p);
    if (message != NULL && status != BNN_OK) *message = bnn_text_take(&error);
    bnn_text_free(&error);
    return status;
}

void bnn_packed_program_sizes(const bnn_packed_program *program, int64_t *input_floats, int64_t *classes) {
    if (input_floats != NULL) *input_floats = program != NULL ? program->input_floats : -1;
    if (classes != NULL) *classes = program != NULL ? program->classes : -1;
}

int bnn_packed_program_run(bnn_packed_program *program, const float *images, int64_t n, float *logits,
                           char **message) {
    if (message != NULL) *message = NULL;
    bnn_text error = {0};
    int status = BNN_INVALID_ARGUMENT;
    int64_t floats = 0, outputs = 0;
    if (program == NULL) bnn_text_printf(&error, "model is NULL");
    else if (images == NULL) bnn_text_printf(&error, "images_nhwc is NULL");
    else if (logits == NULL) bnn_text_printf(&error, "logits is NULL");
    else if (n < 1) bnn_text_printf(&error, "n is %lld, must be at least 1", (long long)n);
    else if (!bnn_mul_nonneg(n, program->input_floats, &floats) || !bnn_mul_nonneg(n, program->classes, &outputs) ||
             (uint64_t)floats > SIZE_MAX / sizeof(float))
        bnn_text_printf(&error, "n = %lld images of %lld floats is too many", (long long)n,
                        (long long)program->input_floats);
    else {
        pthread_mutex_lock(&program->lock);
        const ck_status ran = ck_program_run(program->program, images, n, logits);
        pthread_mutex_unlock(&program->lock);
        if (ran == CK_OK) status = BNN_OK;
        else {
            status = BNN_RUN_FAILED;
            bnn_text_printf(&error, "%s", ck_status_message(ran));
        }
    }
    if (message != NULL && status != BNN_OK) *message = bnn_text_take(&error);
    bnn_text_free(&error);
    return status;
}
