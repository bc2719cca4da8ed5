/* inference.c — bnn_inference.h: open a .bnn (read, check, compile into a kernel program), run batches, report
 * failures per thread. Every function checks every pointer and count before use: a caller gets a status and a
 * message, never an abort. */
#include "runtime_internal.h"

#include "ckernels.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct bnn_model {
    bnn_packed_program *program;
    int64_t input[3];
    int64_t input_floats, classes;
};

/* ---- The calling thread's last message ---------------------------------------------------------------- */

/* One key for every thread's message (malloc'd, freed when the thread ends or the next call replaces it). */
static pthread_key_t message_key;
static pthread_once_t message_once = PTHREAD_ONCE_INIT;
static int message_key_ok;

static void create_message_key(void) { message_key_ok = pthread_key_create(&message_key, free) == 0; }

/* Replaces the calling thread's message; NULL clears it (a successful call). Takes ownership of `message`. */
static void set_message(char *message) {
    pthread_once(&message_once, create_message_key);
    if (!message_key_ok) {
        free(message);
        return;
    }
    char *previous = pthread_getspecific(message_key);
    if (pthread_setspecific(message_key, message) != 0) {
        free(message);
        return;
    }
    free(previous);
}

/* Records a failure: the message, or the status's description if memory ran out while writing it. */
static int fail_with(int status, char *message) {
    if (message == NULL) {
        const char *fixed = bnn_status_message(status);
        message = malloc(strlen(fixed) + 1);
        if (message != NULL) memcpy(message, fixed, strlen(fixed) + 1);
    }
    set_message(message);
    return status;
}

static int fail_text(int status, bnn_text *text) { return fail_with(status, bnn_text_take(text)); }

static int fail_plain(int status, const char *what) {
    bnn_text text = {0};
    bnn_text_printf(&text, "%s", what);
    return fail_text(status, &text);
}

static int succeed(void) {
    set_message(NULL);
    return BNN_OK;
}

const char *bnn_last_error(void) {
    pthread_once(&message_once, create_message_key);
    const char *message = message_key_ok ? pthread_getspecific(message_key) : NULL;
    return message != NULL ? message : "";
}

const char *bnn_status_message(int status) {
    switch (status) {
    case BNN_OK: return "ok";
    case BNN_INVALID_ARGUMENT: return "invalid argument";
    case BNN_IO_ERROR: return "the file cannot be read";
    case BNN_INVALID_MODEL: return "not a valid packed model";
    case BNN_RUN_FAILED: return "the kernels failed while running";
    default: return "unknown status code";
    }
}

/* ---- Models ------------------------------------------------------------------------------------------- */

int bnn_model_open(const char *path, bnn_model **out) {
    if (out != NULL) *out = NULL;
    if (path == NULL) return fail_plain(BNN_INVALID_ARGUMENT, "bnn_model_open: path is NULL");
    if (out == NULL) return fail_plain(BNN_INVALID_ARGUMENT, "bnn_model_open: out is NULL");
    bnn_text error = {0};
    uint8_t *bytes;
    size_t size;
    int status = bnn_read_file(path, &bytes, &size, &error);
    if (status != BNN_OK) return fail_text(status, &error);
    bnn_packed_model *model = NULL;
    status = bnn_packed_model_adopt(bytes, size, path, &model, &error);
    if (status != BNN_OK) return fail_text(status, &error);

    bnn_model *opened = calloc(1, sizeof *opened);
    char *message = NULL;
    if (opened == NULL) {
        bnn_packed_model_free(model);
        bnn_text_printf(&error, "%s: out of memory", path);
        return fail_text(BNN_RUN_FAILED, &error);
    }
    status = bnn_packed_program_create(model, &opened->program, &message);
    memcpy(opened->input, model->input, sizeof opened->input);
    /* The program owns copies of what it runs: the file's bytes are not needed any more. */
    bnn_packed_model_free(model);
    if (status != BNN_OK) {
        free(opened);
        bnn_text_printf(&error, "%s: %s", path, message != NULL ? message : bnn_status_message(status));
        free(message);
        return fail_text(status, &error);
    }
    bnn_packed_program_sizes(opened->program, &opened->input_floats, &opened->classes);
    *out = opened;
    return succeed();
}

int64_t bnn_model_input_size(const bnn_model *model) {
    if (model == NULL) {
        fail_plain(BNN_INVALID_ARGUMENT, "bnn_model_input_size: model is NULL");
        return -1;
    }
    return model->input_floats;
}

int bnn_model_input_shape(const bnn_model *model, int64_t *height, int64_t *width, int64_t *channels) {
    if (model == NULL) return fail_plain(BNN_INVALID_ARGUMENT, "bnn_model_input_shape: model is NULL");
    if (height != NULL) *height = model->input[0];
    if (width != NULL) *width = model->input[1];
    if (channels != NULL) *channels = model->input[2];
    return succeed();
}

int64_t bnn_model_classes(const bnn_model *model) {
    if (model == NULL) {
        fail_plain(BNN_INVALID_ARGUMENT, "bnn_model_classes: model is NULL");
        return -1;
    }
    return model->classes;
}

int bnn_model_run(bnn_model *model, const float *images_nhwc, int64_t n, float *logits) {
    char *message = NULL;
    const int status = bnn_packed_program_run(model != NULL ? model->program : NULL, images_nhwc, n, logits, &message);
    if (status == BNN_OK) return succeed();
    bnn_text text = {0};
    bnn_text_printf(&text, "bnn_model_run: %s", message != NULL ? message : bnn_status_message(status));
    free(message);
    return fail_text(status, &text);
}

void bnn_model_close(bnn_model *model) {
    if (model == NULL) return;
    bnn_packed_program_destroy(model->program);
    free(model);
}

int bnn_set_threads(int threads) {
    if (ck_set_num_threads(threads) != CK_OK) {
        bnn_text text = {0};
        bnn_text_printf(&text, "bnn_set_threads: threads must be between 1 and 4096, got %d", threads);
        return fail_text(BNN_INVALID_ARGUMENT, &text);
    }
    return succeed();
}
