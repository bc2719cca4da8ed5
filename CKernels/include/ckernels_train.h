/*
 * ckernels_train.h — kernels used by training (float loops over pixels: col2im, batch norm, element-wise
 * passes, fused estimator backward). Included by ckernels.h; same conventions.
 */
#ifndef CKERNELS_TRAIN_H
#define CKERNELS_TRAIN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif

#endif /* CKERNELS_TRAIN_H */
