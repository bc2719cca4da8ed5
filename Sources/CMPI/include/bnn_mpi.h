/* bnn_mpi.h — the few MPI operations data-parallel training uses, over Open MPI loaded at run time.
 *
 * Nothing here links MPI: bnn_mpi_load() opens Open MPI's libmpi.so.40 with dlopen when a process finds itself
 * started by mpirun, so a single-process program never needs MPI installed. Every call returns BNN_MPI_OK (0) or
 * an error code; bnn_mpi_error_text() turns a code into a sentence. Requests are opaque handles completed by
 * bnn_mpi_test(). Only the thread that called bnn_mpi_init() may call the others (MPI_THREAD_FUNNELED). */
#ifndef BNN_MPI_H
#define BNN_MPI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    BNN_MPI_OK = 0,
    /* libmpi.so.40 (or $BNN_MPI_LIBRARY) could not be opened or lacks a symbol: see bnn_mpi_load's message. */
    BNN_MPI_ERR_UNAVAILABLE = -1,
    /* A call before bnn_mpi_init() or after bnn_mpi_finalize(). */
    BNN_MPI_ERR_NOT_INITIALIZED = -2,
    /* A NULL pointer, a negative count or an unknown communicator. */
    BNN_MPI_ERR_ARGUMENT = -3,
    /* Positive codes are MPI's own error classes. */
};

/* The communicators: one for collectives that every rank calls in the same order (gradient buckets, batch-norm
 * statistics, the step's agreements), one for the watchdog's point-to-point messages, which may come at any time. */
typedef enum { BNN_MPI_COLLECTIVES = 0, BNN_MPI_WATCHDOG = 1 } bnn_mpi_comm;

typedef struct bnn_mpi_request_s *bnn_mpi_request;

/* Opens the library and resolves every symbol used; idempotent. On failure writes why into `message` (may be
 * NULL) and returns BNN_MPI_ERR_UNAVAILABLE. */
int bnn_mpi_load(char *message, size_t message_size);

/* MPI_Init_thread (FUNNELED), then the two communicators. Writes this process's rank and the number of ranks, and
 * the rank and count on this machine (-1 when MPI cannot say). */
int bnn_mpi_init(int *rank, int *size, int *local_rank, int *local_size);

/* The host name MPI reports for this process (empty before init). */
const char *bnn_mpi_processor_name(void);

/* Starts an in-place sum over all ranks of `count` floats or doubles. The buffer must stay valid and untouched
 * until the request completes. Counts above 2^31 − 1 are split by the caller (bnn_mpi_max_count). */
int bnn_mpi_start_sum_f32(float *values, int64_t count, bnn_mpi_request *request);
int bnn_mpi_start_sum_f64(double *values, int64_t count, bnn_mpi_request *request);

/* Starts a broadcast of `bytes` bytes from `root` on the collectives communicator. */
int bnn_mpi_start_broadcast(void *bytes, int64_t count, int root, bnn_mpi_request *request);

/* Point-to-point on the watchdog communicator: `count` bytes to or from `peer` (-1: any rank) with `tag`. */
int bnn_mpi_start_send(const void *bytes, int64_t count, int peer, int tag, bnn_mpi_request *request);
int bnn_mpi_start_receive(void *bytes, int64_t count, int peer, int tag, bnn_mpi_request *request);

/* Whether `request` has completed (1) or not (0); a completed request is freed and set to NULL. For a receive,
 * `source` (may be NULL) gets the sender's rank. A NULL request counts as complete. */
int bnn_mpi_test(bnn_mpi_request *request, int *done, int *source);

/* Cancels and frees a pending receive (a send cannot be cancelled: it is left to complete). */
int bnn_mpi_cancel(bnn_mpi_request *request);

/* The largest count of one call: MPI counts are C ints. */
int64_t bnn_mpi_max_count(void);

/* Ends every rank of the job with `code` (MPI_Abort on MPI_COMM_WORLD); does not return. */
void bnn_mpi_abort(int code);

/* MPI_Finalize. */
int bnn_mpi_finalize(void);

/* A sentence for an error code of this header or of MPI. */
const char *bnn_mpi_error_text(int code);

#ifdef __cplusplus
}
#endif

#endif
