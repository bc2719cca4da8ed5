/* bnn_mpi.c — Open MPI through dlopen.
 *
 * Linking libmpi would make every program built from this package need Open MPI at run time, including the
 * single-process `bnn train`. So the library is opened only when a process runs under mpirun, like OpenBLAS in
 * CKernels/blas.c. Without mpi.h, the types and constants below are Open MPI's ABI (libmpi.so.40, the soname of
 * Open MPI 3.0 to 5.x): handles are pointers to the library's objects, the predefined ones are its exported globals
 * (MPI_COMM_WORLD is &ompi_mpi_comm_world), MPI_IN_PLACE is (void *)1, a status begins with the source rank, and
 * MPI_THREAD_FUNNELED is 1. Other MPI implementations (MPICH's libmpi.so.12) have another ABI and are refused. */
#define _GNU_SOURCE
#include "bnn_mpi.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void *mpi_handle;   /* MPI_Comm, MPI_Datatype, MPI_Op, MPI_Request: pointers in Open MPI */

typedef struct {
    int source, tag, error, cancelled;
    size_t ucount;
} mpi_status;   /* Open MPI's struct ompi_status_public_t */

#define MPI_IN_PLACE ((void *)1)
enum { MPI_THREAD_FUNNELED = 1, MPI_MAX_ERROR_STRING = 256, MPI_MAX_PROCESSOR_NAME = 256 };

static struct {
    void *library;
    int initialized;
    mpi_handle world, collectives, watchdog;
    mpi_handle type_float, type_double, type_byte, op_sum, request_null;
    int (*init_thread)(int *, char ***, int, int *);
    int (*initialized_fn)(int *);
    int (*comm_rank)(mpi_handle, int *);
    int (*comm_size)(mpi_handle, int *);
    int (*comm_dup)(mpi_handle, mpi_handle *);
    int (*iallreduce)(const void *, void *, int, mpi_handle, mpi_handle, mpi_handle, mpi_handle *);
    int (*ibcast)(void *, int, mpi_handle, int, mpi_handle, mpi_handle *);
    int (*isend)(const void *, int, mpi_handle, int, int, mpi_handle, mpi_handle *);
    int (*irecv)(void *, int, mpi_handle, int, int, mpi_handle, mpi_handle *);
    int (*test)(mpi_handle *, int *, mpi_status *);
    int (*cancel)(mpi_handle *);
    int (*request_free)(mpi_handle *);
    int (*abort_fn)(mpi_handle, int);
    int (*finalize)(void);
    int (*error_string)(int, char *, int *);
    int (*get_processor_name)(char *, int *);
    char processor_name[MPI_MAX_PROCESSOR_NAME + 1];
} mpi;

static int resolve(void **slot, const char *name, char *message, size_t size) {
    *slot = dlsym(mpi.library, name);
    if (*slot != NULL) return 1;
    if (message != NULL && size > 0)
        snprintf(message, size, "the MPI library has no symbol `%s`: it is not Open MPI 3.0 or later (libmpi.so.40)",
                 name);
    return 0;
}

int bnn_mpi_load(char *message, size_t message_size) {
    if (mpi.library != NULL) return BNN_MPI_OK;
    const char *path = getenv("BNN_MPI_LIBRARY");
    if (path == NULL || path[0] == '\0') path = "libmpi.so.40";
    /* RTLD_GLOBAL: Open MPI's own plugins (the transports) are shared objects that resolve libmpi's symbols. */
    mpi.library = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    if (mpi.library == NULL) {
        if (message != NULL && message_size > 0) {
            const char *reason = dlerror();
            snprintf(message, message_size,
                     "cannot load %s (%s); install Open MPI (Debian: apt-get install openmpi-bin libopenmpi-dev) or "
                     "point BNN_MPI_LIBRARY at its libmpi.so.40",
                     path, reason != NULL ? reason : "unknown reason");
        }
        return BNN_MPI_ERR_UNAVAILABLE;
    }
    void *world = NULL, *f32 = NULL, *f64 = NULL, *byte = NULL, *sum = NULL, *null_request = NULL;
    int ok = resolve(&world, "ompi_mpi_comm_world", message, message_size)
        && resolve(&f32, "ompi_mpi_float", message, message_size)
        && resolve(&f64, "ompi_mpi_double", message, message_size)
        && resolve(&byte, "ompi_mpi_byte", message, message_size)
        && resolve(&sum, "ompi_mpi_op_sum", message, message_size)
        && resolve(&null_request, "ompi_request_null", message, message_size)
        && resolve((void **)&mpi.init_thread, "MPI_Init_thread", message, message_size)
        && resolve((void **)&mpi.initialized_fn, "MPI_Initialized", message, message_size)
        && resolve((void **)&mpi.comm_rank, "MPI_Comm_rank", message, message_size)
        && resolve((void **)&mpi.comm_size, "MPI_Comm_size", message, message_size)
        && resolve((void **)&mpi.comm_dup, "MPI_Comm_dup", message, message_size)
        && resolve((void **)&mpi.iallreduce, "MPI_Iallreduce", message, message_size)
        && resolve((void **)&mpi.ibcast, "MPI_Ibcast", message, message_size)
        && resolve((void **)&mpi.isend, "MPI_Isend", message, message_size)
        && resolve((void **)&mpi.irecv, "MPI_Irecv", message, message_size)
        && resolve((void **)&mpi.test, "MPI_Test", message, message_size)
        && resolve((void **)&mpi.cancel, "MPI_Cancel", message, message_size)
        && resolve((void **)&mpi.request_free, "MPI_Request_free", message, message_size)
        && resolve((void **)&mpi.abort_fn, "MPI_Abort", message, message_size)
        && resolve((void **)&mpi.finalize, "MPI_Finalize", message, message_size)
        && resolve((void **)&mpi.error_string, "MPI_Error_string", message, message_size)
        && resolve((void **)&mpi.get_processor_name, "MPI_Get_processor_name", message, message_size);
    if (!ok) {
        dlclose(mpi.library);
        mpi.library = NULL;
        return BNN_MPI_ERR_UNAVAILABLE;
    }
    mpi.world = world;
    mpi.type_float = f32;
    mpi.type_double = f64;
    mpi.type_byte = byte;
    mpi.op_sum = sum;
    mpi.request_null = null_request;
    return BNN_MPI_OK;
}

static int environment_int(const char *name) {
    const char *text = getenv(name);
    if (text == NULL || text[0] == '\0') return -1;
    char *end = NULL;
    long value = strtol(text, &end, 10);
    return (*end == '\0' && value >= 0 && value <= INT_MAX) ? (int)value : -1;
}

int bnn_mpi_init(int *rank, int *size, int *local_rank, int *local_size) {
    if (rank == NULL || size == NULL) return BNN_MPI_ERR_ARGUMENT;
    if (mpi.library == NULL) return BNN_MPI_ERR_UNAVAILABLE;
    if (!mpi.initialized) {
        int provided = 0, code;
        if ((code = mpi.init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided)) != 0) return code;
        if ((code = mpi.comm_dup(mpi.world, &mpi.collectives)) != 0) return code;
        if ((code = mpi.comm_dup(mpi.world, &mpi.watchdog)) != 0) return code;
        int length = 0;
        if (mpi.get_processor_name(mpi.processor_name, &length) != 0) length = 0;
        mpi.processor_name[length >= 0 && length <= MPI_MAX_PROCESSOR_NAME ? length : 0] = '\0';
        mpi.initialized = 1;
    }
    int code;
    if ((code = mpi.comm_rank(mpi.world, rank)) != 0) return code;
    if ((code = mpi.comm_size(mpi.world, size)) != 0) return code;
    /* Open MPI's launcher says where each process sits on its machine. */
    if (local_rank != NULL) *local_rank = environment_int("OMPI_COMM_WORLD_LOCAL_RANK");
    if (local_size != NULL) *local_size = environment_int("OMPI_COMM_WORLD_LOCAL_SIZE");
    return BNN_MPI_OK;
}

const char *bnn_mpi_processor_name(void) { return mpi.processor_name; }

int64_t bnn_mpi_max_count(void) { return INT_MAX; }

static int ready(void) { return mpi.initialized ? BNN_MPI_OK : BNN_MPI_ERR_NOT_INITIALIZED; }

static int valid_count(int64_t count) { return count >= 0 && count <= INT_MAX; }

static int start_sum(void *values, int64_t count, mpi_handle type, bnn_mpi_request *request) {
    int code = ready();
    if (code != BNN_MPI_OK) return code;
    if (values == NULL || request == NULL || !valid_count(count)) return BNN_MPI_ERR_ARGUMENT;
    mpi_handle handle = NULL;
    code = mpi.iallreduce(MPI_IN_PLACE, values, (int)count, type, mpi.op_sum, mpi.collectives, &handle);
    *request = code == 0 ? (bnn_mpi_request)handle : NULL;
    return code;
}

int bnn_mpi_start_sum_f32(float *values, int64_t count, bnn_mpi_request *request) {
    return start_sum(values, count, mpi.type_float, request);
}

int bnn_mpi_start_sum_f64(double *values, int64_t count, bnn_mpi_request *request) {
    return start_sum(values, count, mpi.type_double, request);
}

int bnn_mpi_start_broadcast(void *bytes, int64_t count, int root, bnn_mpi_request *request) {
    int code = ready();
    if (code != BNN_MPI_OK) return code;
    if (bytes == NULL || request == NULL || !valid_count(count) || root < 0) return BNN_MPI_ERR_ARGUMENT;
    mpi_handle handle = NULL;
    code = mpi.ibcast(bytes, (int)count, mpi.type_byte, root, mpi.collectives, &handle);
    *request = code == 0 ? (bnn_mpi_request)handle : NULL;
    return code;
}

int bnn_mpi_start_send(const void *bytes, int64_t count, int peer, int tag, bnn_mpi_request *request) {
    int code = ready();
    if (code != BNN_MPI_OK) return code;
    if (bytes == NULL || request == NULL || !valid_count(count) || peer < 0 || tag < 0) return BNN_MPI_ERR_ARGUMENT;
    mpi_handle handle = NULL;
    code = mpi.isend(bytes, (int)count, mpi.type_byte, peer, tag, mpi.watchdog, &handle);
    *request = code == 0 ? (bnn_mpi_request)handle : NULL;
    return code;
}

int bnn_mpi_start_receive(void *bytes, int64_t count, int peer, int tag, bnn_mpi_request *request) {
    int code = ready();
    if (code != BNN_MPI_OK) return code;
    if (bytes == NULL || request == NULL || !valid_count(count) || peer < -1 || tag < 0) return BNN_MPI_ERR_ARGUMENT;
    mpi_handle handle = NULL;
    code = mpi.irecv(bytes, (int)count, mpi.type_byte, peer, tag, mpi.watchdog, &handle);   /* -1 is MPI_ANY_SOURCE */
    *request = code == 0 ? (bnn_mpi_request)handle : NULL;
    return code;
}

int bnn_mpi_test(bnn_mpi_request *request, int *done, int *source) {
    if (request == NULL || done == NULL) return BNN_MPI_ERR_ARGUMENT;
    if (*request == NULL) {
        *done = 1;
        return BNN_MPI_OK;
    }
    int code = ready();
    if (code != BNN_MPI_OK) return code;
    mpi_handle handle = (mpi_handle)*request;
    mpi_status status = {.source = -1};
    int flag = 0;
    code = mpi.test(&handle, &flag, &status);
    if (code != 0) return code;
    *done = flag != 0;
    if (flag) {
        *request = NULL;   /* MPI_Test freed it and left MPI_REQUEST_NULL */
        if (source != NULL) *source = status.source;
    }
    return BNN_MPI_OK;
}

int bnn_mpi_cancel(bnn_mpi_request *request) {
    if (request == NULL) return BNN_MPI_ERR_ARGUMENT;
    if (*request == NULL) return BNN_MPI_OK;
    int code = ready();
    if (code != BNN_MPI_OK) return code;
    mpi_handle handle = (mpi_handle)*request;
    if ((code = mpi.cancel(&handle)) != 0) return code;
    if (handle != mpi.request_null && (code = mpi.request_free(&handle)) != 0) return code;
    *request = NULL;
    return BNN_MPI_OK;
}

void bnn_mpi_abort(int code) {
    if (mpi.initialized) mpi.abort_fn(mpi.world, code);
    exit(code);
}

int bnn_mpi_finalize(void) {
    if (!mpi.initialized) return BNN_MPI_OK;
    mpi.initialized = 0;
    return mpi.finalize();
}

const char *bnn_mpi_error_text(int code) {
    static char text[MPI_MAX_ERROR_STRING + 64];
    switch (code) {
    case BNN_MPI_OK: return "no error";
    case BNN_MPI_ERR_UNAVAILABLE: return "the MPI library is not loaded";
    case BNN_MPI_ERR_NOT_INITIALIZED: return "MPI is not initialised (or already finalised)";
    case BNN_MPI_ERR_ARGUMENT: return "a NULL pointer, a negative or too large count, or a bad rank";
    default: break;
    }
    int length = 0;
    if (mpi.library != NULL && mpi.error_string(code, text, &length) == 0 && length > 0 && length < (int)sizeof text) {
        text[length] = '\0';
        return text;
    }
    snprintf(text, sizeof text, "MPI error %d", code);
    return text;
}
