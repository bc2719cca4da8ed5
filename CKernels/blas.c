/* blas.c — the one place that talks to OpenBLAS.
 *
 * OpenBLAS is loaded with dlopen on first use rather than linked, for two reasons. OpenBLAS 0.3.21 (Debian 12)
 * does not recognise some AVX-512 CPUs (e.g. AMD family 25 model 17) and silently runs its generic
 * "Prescott" kernels, 4–6× slower; it reads OPENBLAS_CORETYPE only once, when the library is loaded. Loading
 * it ourselves lets us set OPENBLAS_CORETYPE=SkylakeX first when the user has not set it and the CPU has
 * AVX-512. And the build then needs no OpenBLAS headers or link flags. */
#include "internal.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>

typedef void (*sgemm_fn)(int order, int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                         int lda, const float *b, int ldb, float beta, float *c, int ldc);
typedef char *(*corename_fn)(void);
typedef void (*set_threads_fn)(int);

static struct {
    void *handle;
    sgemm_fn sgemm;
    corename_fn corename;
    set_threads_fn set_threads;
} blas;

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

static void load_blas(void) {
    if (getenv("OPENBLAS_CORETYPE") == NULL && ck_isa_supported(CK_ISA_AVX512)) {
        setenv("OPENBLAS_CORETYPE", "SkylakeX", 0);
    }
    static const char *const names[] = {"libopenblas.so.0", "libopenblas.so", "libopenblasp.so.0", "libblas.so.3"};
    for (size_t i = 0; i < sizeof names / sizeof names[0] && blas.handle == NULL; i++) {
        blas.handle = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    }
    if (blas.handle == NULL) return;
    blas.sgemm = (sgemm_fn)dlsym(blas.handle, "cblas_sgemm");
    blas.corename = (corename_fn)dlsym(blas.handle, "openblas_get_corename");
    blas.set_threads = (set_threads_fn)dlsym(blas.handle, "openblas_set_num_threads");
    if (blas.sgemm == NULL) {
        dlclose(blas.handle);
        blas.handle = NULL;
    }
}

ck_status ck_blas_load(void) {
    pthread_once(&blas_once, load_blas);
    return blas.sgemm != NULL ? CK_OK : CK_ERR_BLAS_UNAVAILABLE;
}

const char *ck_blas_core(void) {
    if (ck_blas_load() != CK_OK) return "unavailable";
    if (blas.corename == NULL) return "unknown";
    const char *name = blas.corename();
    return name != NULL ? name : "unknown";
}

ck_status ck_blas_set_num_threads(int n) {
    if (n < 1 || n > 4096) return CK_ERR_INVALID_SIZE;
    ck_status status = ck_blas_load();
    if (status != CK_OK) return status;
    if (blas.set_threads != NULL) blas.set_threads(n);
    return CK_OK;
}

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

ck_status ck_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                   int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    if (a == NULL || b == NULL || c == NULL) return CK_ERR_NULL_POINTER;
    if (!ck_size_ok(m) || !ck_size_ok(n) || !ck_size_ok(k)) return CK_ERR_INVALID_SIZE;
    /* Row-major leading dimensions: the stored row length of each operand. */
    if (lda < (trans_a ? m : k) || ldb < (trans_b ? k : n) || ldc < n) return CK_ERR_SHAPE_MISMATCH;
    if (lda > CK_MAX_DIM || ldb > CK_MAX_DIM || ldc > CK_MAX_DIM) return CK_ERR_INVALID_SIZE;
    ck_status status = ck_blas_load();
    if (status != CK_OK) return status;
    blas.sgemm(ROW_MAJOR, trans_a ? TRANS : NO_TRANS, trans_b ? TRANS : NO_TRANS, (int)m, (int)n, (int)k, alpha, a,
               (int)lda, b, (int)ldb, beta, c, (int)ldc);
    return CK_OK;
}
