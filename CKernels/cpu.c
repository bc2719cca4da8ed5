/* cpu.c — CPU feature detection, choice of kernel path, thread count, status messages. */
#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char cpu_name[256] = "unknown CPU";
static pthread_once_t cpu_name_once = PTHREAD_ONCE_INIT;

/* The value of a "key : value" line of /proc/cpuinfo when the line's key is `key`, else NULL. */
static const char *cpuinfo_value(const char *line, const char *key) {
    const size_t n = strlen(key);
    if (strncmp(line, key, n) != 0) return NULL;
    const char *p = line + n;
    while (*p == ' ' || *p == '\t') p++;
    if (*p != ':') return NULL;
    p++;
    while (*p == ' ') p++;
    return p;
}

static void read_cpu_name(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f == NULL) return;
    char line[512], name[160] = "", family[32] = "", model[32] = "";
    while (fgets(line, sizeof line, f) != NULL) {
        if (line[0] == '\n' && name[0] != '\0') break; /* the first processor's block only */
        line[strcspn(line, "\n")] = '\0';
        const char *v;
        if (name[0] == '\0' && (v = cpuinfo_value(line, "model name")) != NULL) snprintf(name, sizeof name, "%s", v);
        else if (family[0] == '\0' && (v = cpuinfo_value(line, "cpu family")) != NULL) snprintf(family, sizeof family, "%s", v);
        else if (model[0] == '\0' && (v = cpuinfo_value(line, "model")) != NULL) snprintf(model, sizeof model, "%s", v);
    }
    fclose(f);
    if (name[0] == '\0') return;
    if (family[0] != '\0' && model[0] != '\0')
        snprintf(cpu_name, sizeof cpu_name, "%s (family %s, model %s)", name, family, model);
    else
        snprintf(cpu_name, sizeof cpu_name, "%s", name);
}

const char *ck_cpu_name(void) {
    pthread_once(&cpu_name_once, read_cpu_name);
    return cpu_name;
}

const char *ck_status_message(ck_status status) {
    switch (status) {
    case CK_OK: return "ok";
    case CK_ERR_NULL_POINTER: return "a required pointer argument is NULL";
    case CK_ERR_INVALID_SIZE: return "a size, stride or count is zero, negative or too large";
    case CK_ERR_SHAPE_MISMATCH: return "sizes are inconsistent with each other";
    case CK_ERR_OUT_OF_MEMORY: return "out of memory";
    case CK_ERR_UNSUPPORTED: return "not supported by this CPU or build";
    case CK_ERR_BLAS_UNAVAILABLE: return "OpenBLAS could not be loaded (install libopenblas0 or libopenblas-dev)";
    }
    return "unknown status code";
}

int ck_isa_supported(ck_isa isa) {
    switch (isa) {
    case CK_ISA_SCALAR: return 1;
#if defined(__x86_64__)
    case CK_ISA_AVX2: return __builtin_cpu_supports("avx2") ? 1 : 0;
    case CK_ISA_AVX512:
        return (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq")) ? 1 : 0;
#else
    case CK_ISA_AVX2:
    case CK_ISA_AVX512: return 0;
#endif
    }
    return 0;
}

ck_isa ck_isa_best(void) {
    if (ck_isa_supported(CK_ISA_AVX512)) return CK_ISA_AVX512;
    if (ck_isa_supported(CK_ISA_AVX2)) return CK_ISA_AVX2;
    return CK_ISA_SCALAR;
}

const char *ck_isa_name(ck_isa isa) {
    switch (isa) {
    case CK_ISA_SCALAR: return "scalar";
    case CK_ISA_AVX2: return "avx2";
    case CK_ISA_AVX512: return "avx512";
    }
    return "unknown";
}

/* -1: not chosen yet; otherwise a ck_isa. Configuration, not scratch: set once or by ck_isa_force. */
static _Atomic int active_isa = -1;

static ck_isa isa_from_environment(void) {
    const char *name = getenv("BNN_ISA");
    if (name != NULL && *name != '\0') {
        for (int i = CK_ISA_AVX512; i >= CK_ISA_SCALAR; i--) {
            if (strcmp(name, ck_isa_name((ck_isa)i)) == 0 && ck_isa_supported((ck_isa)i)) return (ck_isa)i;
        }
    }
    return ck_isa_best();
}

ck_isa ck_isa_active(void) {
    int isa = atomic_load(&active_isa);
    if (isa < 0) {
        int chosen = (int)isa_from_environment();
        int expected = -1;
        atomic_compare_exchange_strong(&active_isa, &expected, chosen);
        isa = atomic_load(&active_isa);
    }
    return (ck_isa)isa;
}

ck_status ck_isa_force(ck_isa isa) {
    if (isa != CK_ISA_SCALAR && isa != CK_ISA_AVX2 && isa != CK_ISA_AVX512) return CK_ERR_INVALID_SIZE;
    if (!ck_isa_supported(isa)) return CK_ERR_UNSUPPORTED;
    atomic_store(&active_isa, (int)isa);
    return CK_OK;
}

const ck_kernels *ck_active_kernels(void) {
    static const ck_kernels tables[3] = {
        {CK_ISA_SCALAR, 4, ck_popcount_tile_scalar, ck_popcount_peak_scalar, 12 * 64},
        {CK_ISA_AVX2, 4, ck_popcount_tile_avx2, ck_popcount_peak_avx2, 12 * 256},
        {CK_ISA_AVX512, CK_AVX512_MR, ck_popcount_tile_avx512, ck_popcount_peak_avx512, 12 * 512},
    };
    return &tables[ck_isa_active()];
}

/* OpenMP workers spin for 200 ms after each parallel region by default (KMP_BLOCKTIME), taking the cores
 * from OpenBLAS's own threads whenever a float GEMM follows a kernel: training, which alternates the two,
 * measured 1.8× slower for it. Sleeping at once (0) costs a wake-up per region instead, which halved the
 * 2-thread speed of sub-millisecond kernels. 1 ms keeps back-to-back kernels on spinning workers and frees
 * the cores for a GEMM almost at once. Unless the user chose a value, that is the default; libomp reads
 * the variable when it initialises, at the first parallel region, after this runs at load time. */
__attribute__((constructor)) static void default_openmp_blocktime(void) { setenv("KMP_BLOCKTIME", "1", 0); }

static _Atomic int thread_count = 0;

ck_status ck_set_num_threads(int n) {
    if (n < 1 || n > 4096) return CK_ERR_INVALID_SIZE;
    atomic_store(&thread_count, n);
    return CK_OK;
}

int ck_get_num_threads(void) {
    int n = atomic_load(&thread_count);
    if (n >= 1) return n;
    n = omp_get_max_threads();
    return n >= 1 ? n : 1;
}

void *ck_alloc(size_t bytes) {
    size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded == 0) rounded = 64;
    void *p = aligned_alloc(64, rounded);
    if (p != NULL) memset(p, 0, rounded);
    return p;
}

void ck_free(void *p) { free(p); }
