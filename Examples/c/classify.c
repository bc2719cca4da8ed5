/*
 * Classifies CIFAR-10 test images with a packed model through the C inference API (bnn_inference.h).
 *
 *   classify MODEL.bnn [DATA_DIR]
 *
 * MODEL.bnn comes from `bnn export`; DATA_DIR holds test_batch.bin (default: the sample bundled with the
 * package, found next to this program). The program reads the CIFAR-10 records itself, normalises them as
 * training did, runs them in batches and prints the top-1 accuracy. Exit status 1 on any error.
 */
#define _POSIX_C_SOURCE 200809L

#include "bnn_inference.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { SIDE = 32, PLANE = SIDE * SIDE, CHANNELS = 3, IMAGE_FLOATS = PLANE * CHANNELS, RECORD = 1 + IMAGE_FLOATS };
enum { BATCH = 100 };

/* The normalisation of training: x / 255, then (x - mean) / std per RGB channel, in float as the trainer does. */
static const float mean[CHANNELS] = {0.485f, 0.456f, 0.406f};
static const float std_dev[CHANNELS] = {0.229f, 0.224f, 0.225f};

/* Reads a whole file; NULL (with a message printed) on failure. */
static unsigned char *read_file(const char *path, size_t *size) {
    FILE *file = fopen(path, "rb");
    if (!file) {
        fprintf(stderr, "classify: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t capacity = 1 << 20, length = 0;
    unsigned char *bytes = malloc(capacity);
    while (bytes) {
        length += fread(bytes + length, 1, capacity - length, file);
        if (length < capacity) break;
        unsigned char *larger = realloc(bytes, capacity * 2);
        if (!larger) {
            free(bytes);
            bytes = NULL;
            break;
        }
        bytes = larger;
        capacity *= 2;
    }
    int failed = ferror(file);
    fclose(file);
    if (!bytes || failed) {
        fprintf(stderr, "classify: cannot read %s\n", path);
        free(bytes);
        return NULL;
    }
    *size = length;
    return bytes;
}

/* One record (label byte, then the R, G and B planes of 32×32 bytes) as normalised NHWC floats. */
static void normalise(const unsigned char *record, float *image) {
    const unsigned char *planes = record + 1;
    for (int pixel = 0; pixel < PLANE; pixel++) {
        for (int c = 0; c < CHANNELS; c++) {
            float scaled = (float)planes[c * PLANE + pixel] / 255.0f;
            image[pixel * CHANNELS + c] = (scaled - mean[c]) / std_dev[c];
        }
    }
}

static double seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s MODEL.bnn [DATA_DIR]\n", argv[0]);
        return 1;
    }
    char data_path[4096];
    if (argc == 3) {
        snprintf(data_path, sizeof data_path, "%s/test_batch.bin", argv[2]);
    } else {
        /* The bundled sample: Examples/data/cifar10-sample, next to Examples/c where this program is built. */
        const char *slash = strrchr(argv[0], '/');
        int directory = slash ? (int)(slash - argv[0]) : 1;
        snprintf(data_path, sizeof data_path, "%.*s/../data/cifar10-sample/test_batch.bin", directory,
                 slash ? argv[0] : ".");
    }

    bnn_model *model = NULL;
    int status = bnn_model_open(argv[1], &model);
    if (status != BNN_OK) {
        fprintf(stderr, "classify: %s: %s\n", bnn_status_message(status), bnn_last_error());
        return 1;
    }
    int64_t height = 0, width = 0, channels = 0;
    bnn_model_input_shape(model, &height, &width, &channels);
    int64_t classes = bnn_model_classes(model);
    if (height != SIDE || width != SIDE || channels != CHANNELS) {
        fprintf(stderr, "classify: the model takes %lldx%lldx%lld images, CIFAR-10 has 32x32x3\n",
                (long long)height, (long long)width, (long long)channels);
        bnn_model_close(model);
        return 1;
    }

    size_t size = 0;
    unsigned char *records = read_file(data_path, &size);
    if (!records) {
        bnn_model_close(model);
        return 1;
    }
    if (size == 0 || size % RECORD != 0) {
        fprintf(stderr, "classify: %s holds %zu bytes, not a whole number of %d-byte CIFAR-10 records\n",
                data_path, size, RECORD);
        free(records);
        bnn_model_close(model);
        return 1;
    }
    size_t count = size / RECORD;

    float *images = malloc(sizeof(float) * IMAGE_FLOATS * BATCH);
    float *logits = malloc(sizeof(float) * (size_t)classes * BATCH);
    if (!images || !logits) {
        fprintf(stderr, "classify: out of memory\n");
        free(images), free(logits), free(records);
        bnn_model_close(model);
        return 1;
    }
    size_t correct = 0;
    double running = 0;
    for (size_t start = 0; start < count && status == BNN_OK; start += BATCH) {
        size_t n = count - start < BATCH ? count - start : BATCH;
        for (size_t i = 0; i < n; i++) normalise(records + (start + i) * RECORD, images + i * IMAGE_FLOATS);
        double began = seconds();
        status = bnn_model_run(model, images, (int64_t)n, logits);
        running += seconds() - began;
        for (size_t i = 0; i < n && status == BNN_OK; i++) {
            const float *row = logits + i * (size_t)classes;
            int64_t best = 0;
            for (int64_t k = 1; k < classes; k++) {
                if (row[k] > row[best]) best = k;
            }
            if (best == records[(start + i) * RECORD]) correct++;
        }
    }
    if (status != BNN_OK) {
        fprintf(stderr, "classify: %s: %s\n", bnn_status_message(status), bnn_last_error());
    } else {
        printf("classify: %s on %zu images of %s\n", argv[1], count, data_path);
        printf("top-1 %.2f %% (%zu/%zu), %.0f images/s in bnn_model_run (batches of %d)\n",
               100.0 * (double)correct / (double)count, correct, count, (double)count / running, BATCH);
    }
    free(images);
    free(logits);
    free(records);
    bnn_model_close(model);
    return status == BNN_OK ? 0 : 1;
}
