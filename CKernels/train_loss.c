/* train_loss.c — softmax cross-entropy over rows of logits, forward (per-row loss and softmax) and backward. */
#include "internal.h"

#include <math.h>

#define MAX_ELEMENTS ((int64_t)1 << 40)

static bool loss_ok(int64_t rows, int64_t classes) {
    return ck_size_ok(rows) && ck_size_ok(classes) && rows <= MAX_ELEMENTS / classes;
}

ck_status ck_cross_entropy_forward_f32(const float *logits, const int64_t *labels, int64_t rows, int64_t classes,
                                       float *losses, float *probs) {
    if (logits == NULL || labels == NULL || losses == NULL || probs == NULL) return CK_ERR_NULL_POINTER;
    if (!loss_ok(rows, classes)) return CK_ERR_INVALID_SIZE;
    for (int64_t r = 0; r < rows; r++) {
        if (labels[r] < 0 || labels[r] >= classes) return CK_ERR_INVALID_SIZE;
    }
    const int threads = ck_get_num_threads();
#pragma omp parallel for num_threads(threads) if (rows * classes > 16384)
    for (int64_t r = 0; r < rows; r++) {
        const float *z = logits + r * classes;
        float *p = probs + r * classes;
        /* Subtracting the maximum keeps every exponent ≤ 0, so nothing overflows. */
        double m = z[0];
        for (int64_t k = 1; k < classes; k++) m = z[k] > m ? z[k] : m;
        double sum = 0.0;
        for (int64_t k = 0; k < classes; k++) sum += exp((double)z[k] - m);
        const double lse = m + log(sum);
        for (int64_t k = 0; k < classes; k++) p[k] = (float)exp((double)z[k] - lse);
        losses[r] = (float)(lse - (double)z[labels[r]]);
    }
    return CK_OK;
}

ck_status ck_cross_entropy_backward_f32(const float *probs, const int64_t *labels, int64_t rows, int64_t classes,
                                        float scale, int accumulate, float *dlogits) {
    if (probs == NULL || labels == NULL || dlogits == NULL) return CK_ERR_NULL_POINTER;
    if (!loss_ok(rows, classes)) return CK_ERR_INVALID_SIZE;
    for (int64_t r = 0; r < rows; r++) {
        if (labels[r] < 0 || labels[r] >= classes) return CK_ERR_INVALID_SIZE;
    }
    const int threads = ck_get_num_threads();
#pragma omp parallel for num_threads(threads) if (rows * classes > 16384)
    for (int64_t r = 0; r < rows; r++) {
        const float *p = probs + r * classes;
        float *d = dlogits + r * classes;
        const int64_t label = labels[r];
        for (int64_t k = 0; k < classes; k++) {
            const float v = scale * (p[k] - (k == label ? 1.0f : 0.0f));
            d[k] = accumulate ? d[k] + v : v;
        }
    }
    return CK_OK;
}
