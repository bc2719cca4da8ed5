/*
 * Using the kernels from C: pack the signs of two small float matrices, multiply them as ±1 matrices
 * with the XNOR-popcount GEMM on every kernel path the CPU supports, and check every entry against a
 * plain loop over the floats.
 * Build and run: Examples/c/build.sh && Examples/c/bgemm_example
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ckernels.h"

enum { M = 3, N = 5, K = 70 }; /* K spans two words, so the leftover-bit rule is exercised */

/* Deterministic values in [-1, 1), with exact zeros now and then (sign(0) counts as +1). */
static float next_value(uint32_t *state) {
    *state = *state * 1664525u + 1013904223u;
    uint32_t r = *state >> 8;
    if (r % 11 == 0) return 0.0f;
    return (float)r / (float)(1u << 23) - 1.0f;
}

static int report(ck_status status, const char *what) {
    if (status == CK_OK) return 0;
    fprintf(stderr, "%s failed: %s\n", what, ck_status_message(status));
    return 1;
}

int main(void) {
    static float a[M][K], b[N][K];
    uint32_t state = 2024;
    for (int i = 0; i < M; i++)
        for (int t = 0; t < K; t++) a[i][t] = next_value(&state);
    for (int j = 0; j < N; j++)
        for (int t = 0; t < K; t++) b[j][t] = next_value(&state);

    const int64_t words = ck_words(K);
    uint64_t *a_bits = calloc((size_t)(M * words), sizeof *a_bits);
    uint64_t *b_bits = calloc((size_t)(N * words), sizeof *b_bits);
    int32_t out[M][N];
    if (!a_bits || !b_bits) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }

    int32_t expected[M][N];
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            expected[i][j] = 0;
            for (int t = 0; t < K; t++) expected[i][j] += (a[i][t] < 0.0f) == (b[j][t] < 0.0f) ? 1 : -1;
        }
    }

    int failed = report(ck_pack_signs(&a[0][0], M, K, a_bits), "ck_pack_signs(a)") ||
                 report(ck_pack_signs(&b[0][0], N, K, b_bits), "ck_pack_signs(b)");

    /* Every kernel path this CPU can run must give the same exact integers. */
    for (int isa = CK_ISA_SCALAR; isa <= CK_ISA_AVX512 && !failed; isa++) {
        if (!ck_isa_supported((ck_isa)isa)) continue;
        failed = report(ck_isa_force((ck_isa)isa), "ck_isa_force") ||
                 report(ck_bgemm(a_bits, b_bits, M, N, K, &out[0][0]), "ck_bgemm");
        if (failed) break;
        printf("ck_bgemm on the %s path, %d x %d x %d:\n", ck_isa_name(ck_isa_active()), M, N, K);
        for (int i = 0; i < M; i++) {
            for (int j = 0; j < N; j++) {
                printf(" %4d", out[i][j]);
                if (out[i][j] != expected[i][j]) {
                    fprintf(stderr, "\nmismatch at [%d][%d]: ck_bgemm gave %d, the float loop %d\n", i, j,
                            out[i][j], expected[i][j]);
                    failed = 1;
                }
            }
            printf("\n");
        }
    }
    if (!failed) printf("matches the float loop on every path\n");

    free(a_bits);
    free(b_bits);
    return failed;
}
