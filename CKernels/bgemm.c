/* bgemm.c — XNOR-popcount GEMM: panel packing of B, the macro-kernel over cache blocks, the public entry
 * points. The per-ISA micro-kernels live in bgemm_scalar.c, bgemm_avx2.c and bgemm_avx512.c.
 *
 * out[i][j] = k − 2·popcount(a_i XOR b_j). B (the weights) is packed once into panels of CK_NR columns,
 * interleaved by word: panel p holds word t of column p·CK_NR + j at [t·CK_NR + j], so one micro-kernel
 * step loads CK_NR consecutive words. Columns past n are zero; their results are computed and dropped.
 * A is read in place (rows of ck_words(k) words): a micro-tile broadcasts one word per row. */
#include "internal.h"

#include <stdatomic.h>
#include <string.h>

/* Cache blocking: a block of MC rows × NC columns is one unit of parallel work; KC words of the
 * reduction are done per micro-kernel call so a B panel (CK_NR × KC words = 16 KiB) stays in L1. */
enum { MC = 192, NC = 256, KC = 128 };

ck_status ck_bgemm_weights_init(ck_bgemm_weights *w, int64_t n, int64_t k,
                                const uint64_t *(*row)(const void *ctx, int64_t j), const void *ctx) {
    w->n = n;
    w->k = k;
    w->kw = ck_words(k);
    w->panels = (n + CK_NR - 1) / CK_NR;
    w->data = ck_alloc((size_t)(w->panels * w->kw * CK_NR) * sizeof(uint64_t));
    if (w->data == NULL) return CK_ERR_OUT_OF_MEMORY;
    for (int64_t j = 0; j < n; j++) {
        const uint64_t *src = row(ctx, j);
        uint64_t *panel = w->data + (j / CK_NR) * w->kw * CK_NR + (j % CK_NR);
        for (int64_t t = 0; t < w->kw; t++) panel[t * CK_NR] = src[t];
    }
    return CK_OK;
}

void ck_bgemm_weights_free(ck_bgemm_weights *w) {
    if (w != NULL) ck_free(w->data);
}

typedef struct {
    const uint64_t *b;
    int64_t kw;
} dense_rows;

static const uint64_t *dense_row(const void *ctx, int64_t j) {
    const dense_rows *d = ctx;
    return d->b + j * d->kw;
}

ck_status ck_bgemm_weights_create(const uint64_t *b, int64_t n, int64_t k, ck_bgemm_weights **out) {
    if (out == NULL) return CK_ERR_NULL_POINTER;
    *out = NULL;
    if (b == NULL) return CK_ERR_NULL_POINTER;
    if (!ck_size_ok(n) || !ck_size_ok(k)) return CK_ERR_INVALID_SIZE;
    ck_bgemm_weights *w = ck_alloc(sizeof *w);
    if (w == NULL) return CK_ERR_OUT_OF_MEMORY;
    dense_rows rows = {b, ck_words(k)};
    ck_status status = ck_bgemm_weights_init(w, n, k, dense_row, &rows);
    if (status != CK_OK) {
        ck_free(w);
        return status;
    }
    *out = w;
    return CK_OK;
}

void ck_bgemm_weights_destroy(ck_bgemm_weights *w) {
    if (w == NULL) return;
    ck_bgemm_weights_free(w);
    ck_free(w);
}

ck_status ck_bgemm_weights_shape(const ck_bgemm_weights *w, int64_t *n, int64_t *k) {
    if (w == NULL) return CK_ERR_NULL_POINTER;
    if (n != NULL) *n = w->n;
    if (k != NULL) *k = w->k;
    return CK_OK;
}

void ck_bgemm_dot_block(const ck_kernels *kern, const uint64_t *const *rows, int64_t m, const ck_bgemm_weights *w,
                        int64_t n0, int64_t nc, int32_t k, int32_t *dot, int64_t ldd, const ck_row_segments *seg) {
    const int mr = kern->mr;
    const int64_t kw = w->kw;
    const ck_row_segments whole = {1, kw, 0};
    if (seg == NULL) seg = &whole;
    int32_t edge[CK_MR_MAX * CK_NR] __attribute__((aligned(64)));
    const uint64_t *a[CK_MR_MAX];
    for (int64_t j0 = n0; j0 < n0 + nc; j0 += CK_NR) {
        const uint64_t *panel = w->data + (j0 / CK_NR) * kw * CK_NR;
        const int64_t cols = n0 + nc - j0 < CK_NR ? n0 + nc - j0 : CK_NR;
        for (int64_t i0 = 0; i0 < m; i0 += mr) {
            const int64_t height = m - i0 < mr ? m - i0 : mr;
            /* Rows past the end repeat the last row: valid memory, results dropped. */
            for (int i = 0; i < mr; i++) a[i] = rows[i0 + (i < height ? i : height - 1)];
            /* Full tiles are written in place; edge tiles go through a local tile. */
            const int full = height == mr && cols == CK_NR;
            int32_t *out = full ? dot + i0 * ldd + (j0 - n0) : edge;
            const int64_t ldo = full ? ldd : CK_NR;
            if (seg->count * seg->words <= KC) {
                kern->popcount_tile(mr, seg, a, panel, out, ldo, CK_TILE_FINAL, k);
            } else {
                /* Long rows: KC words at a time so the panel slice stays in L1. */
                for (int64_t sg = 0; sg < seg->count; sg++) {
                    for (int64_t t0 = 0; t0 < seg->words; t0 += KC) {
                        const ck_row_segments piece = {1, seg->words - t0 < KC ? seg->words - t0 : KC, 0};
                        const int64_t t = sg * seg->words + t0; /* position in the panel */
                        const uint64_t *ak[CK_MR_MAX];
                        for (int i = 0; i < mr; i++) ak[i] = a[i] + sg * seg->stride + t0;
                        const int flags =
                            (t > 0 ? CK_TILE_ACCUMULATE : 0) | (t + piece.words == kw ? CK_TILE_FINAL : 0);
                        kern->popcount_tile(mr, &piece, ak, panel + t * CK_NR, out, ldo, flags, k);
                    }
                }
            }
            if (!full) {
                for (int64_t i = 0; i < height; i++)
                    memcpy(dot + (i0 + i) * ldd + (j0 - n0), edge + i * CK_NR, (size_t)cols * sizeof(int32_t));
            }
        }
    }
}

ck_status ck_bgemm_packed(const uint64_t *a, int64_t m, const ck_bgemm_weights *w, int32_t *out,
                          int64_t ldo) {
    if (a == NULL || w == NULL || out == NULL) return CK_ERR_NULL_POINTER;
    if (!ck_size_ok(m)) return CK_ERR_INVALID_SIZE;
    if (ldo < w->n) return CK_ERR_SHAPE_MISMATCH;
    const ck_kernels *kern = ck_active_kernels();
    const int64_t n = w->n, k = w->k, kw = w->kw;
    const int threads = ck_get_num_threads();
    /* Smaller blocks when the output is small, so every thread gets several (196 × 256 is one 192-row block
     * and a sliver otherwise). */
    int64_t mc = MC, nc = NC;
    while ((m + mc - 1) / mc * ((n + nc - 1) / nc) < 4 * threads && (mc > 4 * kern->mr || nc > CK_NR)) {
        if (mc > 4 * kern->mr) mc = (mc / 2 + kern->mr - 1) / kern->mr * kern->mr;
        else nc /= 2;
    }
    const int64_t row_blocks = (m + mc - 1) / mc, col_blocks = (n + nc - 1) / nc;
    const int64_t tasks = row_blocks * col_blocks;
    _Atomic int64_t next_task = 0;
    _Atomic int failed = 0;
    /* Blocks are handed out one at a time from a shared counter (dynamic scheduling without the OpenMP
     * dispatch API, whose newest entry points the Debian runtime lacks). */
#pragma omp parallel num_threads(threads)
    {
        const uint64_t **rows = ck_alloc(MC * sizeof *rows);
        if (rows == NULL) atomic_store(&failed, 1);
        for (int64_t task = atomic_fetch_add(&next_task, 1); rows != NULL && task < tasks;
             task = atomic_fetch_add(&next_task, 1)) {
            const int64_t i0 = (task / col_blocks) * mc, j0 = (task % col_blocks) * nc;
            const int64_t rows_here = m - i0 < mc ? m - i0 : mc, cols_here = n - j0 < nc ? n - j0 : nc;
            for (int64_t i = 0; i < rows_here; i++) rows[i] = a + (i0 + i) * kw;
            ck_bgemm_dot_block(kern, rows, rows_here, w, j0, cols_here, (int32_t)k, out + i0 * ldo + j0, ldo, NULL);
        }
        ck_free(rows);
    }
    if (atomic_load(&failed)) return CK_ERR_OUT_OF_MEMORY;
    return CK_OK;
}

ck_status ck_bgemm(const uint64_t *a, const uint64_t *b, int64_t m, int64_t n, int64_t k, int32_t *out) {
    if (a == NULL || b == NULL || out == NULL) return CK_ERR_NULL_POINTER;
    if (!ck_size_ok(m) || !ck_size_ok(n) || !ck_size_ok(k)) return CK_ERR_INVALID_SIZE;
    ck_bgemm_weights *w = NULL;
    ck_status status = ck_bgemm_weights_create(b, n, k, &w);
    if (status != CK_OK) return status;
    status = ck_bgemm_packed(a, m, w, out, n);
    ck_bgemm_weights_destroy(w);
    return status;
}
