/*
 * fuzz_model_file.c — libFuzzer target for the C reader of packed models (Sources/BNNRuntime).
 *
 * Each input is taken as the bytes of a .bnn file: parsed and validated (bnn_packed_model_parse), read back
 * field by field, compiled into a kernel program (bnn_packed_program_create) and, when the network is small, run
 * on one zero image. Built by scripts/fuzz with -fsanitize=fuzzer,address,undefined and
 * -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION, which makes the reader compute the checksum but not insist on it
 * (a fuzzer cannot forge one), so mutations reach the graph's JSON and the layers' checks. Any crash, sanitizer
 * report, leak or inconsistency below (abort()) is a finding.
 */
#include "bnn_model_file.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a layer of the program costs at most (multiply-adds per image), so that only small networks run. */
static double layer_cost(const bnn_layer *layer) {
    const double k = layer->kernel < 0 ? 1.0 : (double)layer->kernel;
    const double c = (double)layer->channels, o = (double)layer->out_channels;
    return (double)layer->height * (double)layer->width * k * k * (c > o ? c : o) * (o > 1 ? o : 1);
}

/* Checks what the reader promised about an accepted model; a broken promise aborts (a finding). */
static void check_model(const bnn_packed_model *model) {
    if (model->layer_count == 0 || model->layer_count > BNN_MAX_LAYERS || model->classes < 1) abort();
    for (int i = 0; i < 3; i++)
        if (model->input[i] < 1 || model->input[i] > BNN_MAX_INPUT_SIZE) abort();
    size_t claimed = 0;
    for (size_t i = 0; i < model->layer_count; i++) {
        const bnn_layer *layer = &model->layers[i];
        if (layer->input < 0 || layer->input > BNN_MAX_BUFFER || layer->residual < -1 ||
            layer->residual > BNN_MAX_BUFFER || layer->output < -1 || layer->output > BNN_MAX_BUFFER ||
            layer->output_bits < -1 || layer->output_bits > BNN_MAX_BUFFER)
            abort();
        if (layer->height < 1 || layer->height > BNN_MAX_LAYER_SIZE || layer->channels < 1 ||
            layer->out_channels < 1)
            abort();
        for (int t = 0; t < layer->tensor_count; t++) {
            const bnn_tensor_view *tensor = layer->tensors[t];
            /* Touch every byte: ASan reports any read outside the model's copy of the file. */
            volatile uint8_t sum = 0;
            for (size_t b = 0; b < tensor->size; b++) sum += tensor->data[b];
            (void)sum;
            claimed++;
        }
        volatile size_t n = 0;
        for (size_t b = 0; b < layer->name.length; b++) n += (uint8_t)layer->name.bytes[b];
        (void)n;
    }
    if (claimed != model->file->tensor_count) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bnn_packed_model *model = NULL;
    char *message = NULL;
    const int status = bnn_packed_model_parse(data, size, "fuzz.bnn", &model, &message);
    if (status != BNN_OK) {
        /* A refusal must explain itself and must not hand out a model. */
        if (model != NULL || message == NULL || message[0] == '\0') abort();
        free(message);
        return 0;
    }
    if (model == NULL || message != NULL) abort();
    check_model(model);

    bnn_packed_program *program = NULL;
    if (bnn_packed_program_create(model, &program, &message) == BNN_OK) {
        double cost = 0;
        for (size_t i = 0; i < model->layer_count; i++) cost += layer_cost(&model->layers[i]);
        int64_t input = 0, classes = 0;
        bnn_packed_program_sizes(program, &input, &classes);
        /* Small networks run one zero image: the steps the reader let through must run without fault. */
        if (cost <= 2e6 && input <= 65536 && classes <= 65536) {
            float *image = calloc((size_t)input, sizeof(float));
            float *logits = malloc((size_t)classes * sizeof(float));
            if (image != NULL && logits != NULL) {
                char *run_message = NULL;
                if (bnn_packed_program_run(program, image, 1, logits, &run_message) != BNN_OK && run_message == NULL)
                    abort();
                free(run_message);
            }
            free(image);
            free(logits);
        }
        bnn_packed_program_destroy(program);
    } else {
        if (program != NULL) abort();
        free(message);
    }
    bnn_packed_model_free(model);
    return 0;
}
