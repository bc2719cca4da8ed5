/* safetensors.c — the safetensors reader: an 8-byte little-endian header length, a JSON header describing each
 * tensor (dtype, shape, byte range in the data buffer) and optional string metadata, then the data buffer.
 *
 * Everything the header says is checked against the bytes present before it is believed: the header length
 * against the file and a cap, each range against the buffer, each shape's byte count (overflow-checked)
 * against its range, and the ranges together must tile the buffer exactly. The messages are the ones the Swift
 * reader gave before it called this one, so that both say the same about a bad file. */
#include "runtime_internal.h"

#include <stdlib.h>
#include <string.h>

static const char *const dtype_names[] = {"BOOL", "U8",  "I8",  "F8_E5M2", "F8_E4M3", "I16", "U16", "F16",
                                          "BF16", "I32", "U32", "F32",     "F64",     "I64", "U64"};
static const int dtype_sizes[] = {1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8};
enum { DTYPE_COUNT = (int)(sizeof dtype_sizes / sizeof dtype_sizes[0]) };

const char *bnn_dtype_name(bnn_dtype dtype) {
    return (unsigned)dtype < DTYPE_COUNT ? dtype_names[dtype] : "?";
}

int bnn_dtype_size(bnn_dtype dtype) { return (unsigned)dtype < DTYPE_COUNT ? dtype_sizes[dtype] : 0; }

/* A tensor while the header is read: its view, where its dimensions are in the growing dims array (the array
 * may move), its byte range and its place in the header (the last key of an ordering, for determinism). */
typedef struct entry {
    bnn_tensor_view view;
    size_t dims_at;
    int64_t begin, end;
    size_t index;
} entry;

/* The allocation behind a bnn_safetensors: the public part first, so the two pointers are the same. */
typedef struct file_storage {
    bnn_safetensors public;
    bnn_tensor_view *views;
    bnn_metadata_entry *metadata;
    int64_t *dims;
    char *pool;
} file_storage;

void bnn_safetensors_free(bnn_safetensors *file) {
    if (file == NULL) return;
    file_storage *storage = (file_storage *)file;
    free(storage->views);
    free(storage->metadata);
    free(storage->dims);
    free(storage->pool);
    free(storage);
}

void bnn_safetensors_error_clear(bnn_safetensors_error *error) {
    if (error == NULL) return;
    free(error->tensor);
    free(error->reason);
    error->tensor = error->reason = NULL;
}

/* Grows `*array` (of `size`-byte items) to hold at least `needed` items; false if memory runs out. */
static bool grow(void **array, size_t *capacity, size_t needed, size_t size) {
    if (needed <= *capacity) return true;
    size_t next = *capacity < 16 ? 16 : *capacity;
    while (next < needed) {
        if (next > SIZE_MAX / 2 / size) return false;
        next *= 2;
    }
    void *grown = realloc(*array, next * size);
    if (grown == NULL) return false;
    *array = grown;
    *capacity = next;
    return true;
}

/* State of one parse: the error being written and what has been read so far. */
typedef struct parser {
    const uint8_t *bytes;
    size_t size;
    bnn_json_reader reader;
    bnn_text reason;
    bnn_text_view fault; /* the tensor at fault, if any (points into the pool) */
    bool out_of_memory;
    entry *entries;
    size_t entry_count, entry_capacity;
    bnn_metadata_entry *metadata;
    size_t metadata_count, metadata_capacity;
    int64_t *dims;
    size_t dim_count, dim_capacity;
} parser;

static bool failure(parser *ps, const bnn_text_view *tensor, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
static bool failure(parser *ps, const bnn_text_view *tensor, const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    bnn_text_vprintf(&ps->reason, format, arguments);
    va_end(arguments);
    if (tensor != NULL) ps->fault = *tensor;
    return false;
}

static bool out_of_memory(parser *ps) {
    ps->out_of_memory = true;
    return failure(ps, NULL, "out of memory while reading the header");
}

static bool malformed(parser *ps) {
    /* bnn_json_check accepted the text, so the reader cannot stumble; if it ever does, say so plainly. */
    return failure(ps, NULL, "header could not be read after it was checked (internal error)");
}

/* The raw JSON text of the value at the reader, quoted into the reason (the reader does not move). */
static void quote_raw(parser *ps) {
    const size_t saved = ps->reader.position;
    bnn_text_view raw;
    if (bnn_json_skip(&ps->reader, &raw)) bnn_text_quote(&ps->reason, raw.bytes, raw.length);
    ps->reader.position = saved;
}

static bool text_equals(bnn_text_view text, const char *literal) {
    return text.length == strlen(literal) && memcmp(text.bytes, literal, text.length) == 0;
}

/* A number's text as a non-negative integer that fits int64_t (digits only: no sign, fraction or exponent). */
static bool non_negative(bnn_text_view raw, int64_t *value) {
    if (raw.length == 0 || raw.bytes[0] == '-') return false;
    return bnn_json_integer(raw, value) == 0;
}

/* The value at the reader as a non-negative integer (consumed), or false with the reader unmoved. */
static bool read_non_negative(parser *ps, int64_t *value) {
    const size_t saved = ps->reader.position;
    bnn_text_view raw;
    if (bnn_json_peek(&ps->reader) == BNN_JSON_NUMBER && bnn_json_number(&ps->reader, &raw) && non_negative(raw, value))
        return true;
    ps->reader.position = saved;
    return false;
}

static bool read_metadata(parser *ps) {
    const bnn_json_kind kind = bnn_json_peek(&ps->reader);
    if (kind != BNN_JSON_OBJECT)
        return failure(ps, NULL, "__metadata__ is %s, expected an object of strings", bnn_json_kind_name(kind));
    if (!bnn_json_enter(&ps->reader)) return malformed(ps);
    bool first = true, ok = true;
    bnn_text_view key;
    while (bnn_json_next_key(&ps->reader, &first, &key, &ok)) {
        const bnn_json_kind item = bnn_json_peek(&ps->reader);
        bnn_text_view value;
        if (item != BNN_JSON_STRING) {
            failure(ps, NULL, "__metadata__ entry \"");
            bnn_text_quote(&ps->reason, key.bytes, key.length);
            return failure(ps, NULL, "\" is %s, expected a string", bnn_json_kind_name(item));
        }
        if (!bnn_json_string(&ps->reader, &value)) return malformed(ps);
        if (!grow((void **)&ps->metadata, &ps->metadata_capacity, ps->metadata_count + 1, sizeof(bnn_metadata_entry)))
            return out_of_memory(ps);
        ps->metadata[ps->metadata_count++] = (bnn_metadata_entry){key, value};
    }
    return ok ? true : malformed(ps);
}

static bool read_tensor(parser *ps, bnn_text_view name, int64_t buffer_length) {
    const bnn_json_kind kind = bnn_json_peek(&ps->reader);
    if (kind != BNN_JSON_OBJECT) return failure(ps, &name, "entry is %s, expected an object", bnn_json_kind_name(kind));
    if (!bnn_json_enter(&ps->reader)) return malformed(ps);

    /* Where each field's value starts: the fields are read after all are known, in a fixed order, so that the
     * first problem reported does not depend on the order of the keys. */
    static const char *const fields[3] = {"dtype", "shape", "data_offsets"};
    size_t at[3] = {0, 0, 0};
    bool present[3] = {false, false, false};
    bool first = true, ok = true;
    bnn_text_view key;
    while (bnn_json_next_key(&ps->reader, &first, &key, &ok)) {
        int field = -1;
        for (int i = 0; i < 3; i++)
            if (text_equals(key, fields[i])) field = i;
        if (field < 0) {
            failure(ps, &name, "unknown field \"");
            bnn_text_quote(&ps->reason, key.bytes, key.length);
            return failure(ps, &name, "\" (expected dtype, shape, data_offsets)");
        }
        if (present[field]) return failure(ps, &name, "field \"%s\" appears twice", fields[field]);
        present[field] = true;
        at[field] = ps->reader.position;
        if (!bnn_json_skip(&ps->reader, NULL)) return malformed(ps);
    }
    if (!ok) return malformed(ps);
    const size_t end_of_entry = ps->reader.position;

    /* dtype */
    bnn_json_kind found = BNN_JSON_INVALID;
    if (present[0]) {
        ps->reader.position = at[0];
        found = bnn_json_peek(&ps->reader);
    }
    if (!present[0] || found != BNN_JSON_STRING)
        return failure(ps, &name, "dtype is %s, expected a string", present[0] ? bnn_json_kind_name(found) : "missing");
    bnn_text_view dtype_text;
    if (!bnn_json_string(&ps->reader, &dtype_text)) return malformed(ps);
    int dtype = -1;
    for (int i = 0; i < DTYPE_COUNT; i++)
        if (text_equals(dtype_text, dtype_names[i])) dtype = i;
    if (dtype < 0) {
        failure(ps, &name, "unknown dtype \"");
        bnn_text_quote(&ps->reason, dtype_text.bytes, dtype_text.length);
        failure(ps, &name, "\" (known: ");
        for (int i = 0; i < DTYPE_COUNT; i++) failure(ps, &name, i == 0 ? "%s" : ", %s", dtype_names[i]);
        return failure(ps, &name, ")");
    }

    /* shape */
    if (present[1]) {
        ps->reader.position = at[1];
        found = bnn_json_peek(&ps->reader);
    }
    if (!present[1] || found != BNN_JSON_ARRAY)
        return failure(ps, &name, "shape is %s, expected an array of integers",
                       present[1] ? bnn_json_kind_name(found) : "missing");
    const size_t shape_at = ps->reader.position;
    const size_t dims_at = ps->dim_count;
    if (!bnn_json_enter(&ps->reader)) return malformed(ps);
    first = true;
    while (bnn_json_next_element(&ps->reader, &first, &ok)) {
        int64_t dimension;
        if (!read_non_negative(ps, &dimension)) {
            const size_t element = ps->reader.position;
            failure(ps, &name, "shape ");
            ps->reader.position = shape_at;
            quote_raw(ps);
            failure(ps, &name, " holds ");
            ps->reader.position = element;
            quote_raw(ps);
            return failure(ps, &name, ", expected non-negative integers");
        }
        if (!grow((void **)&ps->dims, &ps->dim_capacity, ps->dim_count + 1, sizeof(int64_t))) return out_of_memory(ps);
        ps->dims[ps->dim_count++] = dimension;
    }
    if (!ok) return malformed(ps);
    const int64_t rank = (int64_t)(ps->dim_count - dims_at);

    /* data_offsets */
    int64_t begin = 0, end = 0;
    bool offsets_ok = false;
    if (present[2]) {
        ps->reader.position = at[2];
        if (bnn_json_peek(&ps->reader) == BNN_JSON_ARRAY) {
            bnn_json_enter(&ps->reader);
            first = true;
            offsets_ok = bnn_json_next_element(&ps->reader, &first, &ok) && read_non_negative(ps, &begin) &&
                         bnn_json_next_element(&ps->reader, &first, &ok) && read_non_negative(ps, &end) &&
                         !bnn_json_next_element(&ps->reader, &first, &ok) && ok;
        }
    }
    if (!offsets_ok) {
        failure(ps, &name, "data_offsets is ");
        if (present[2]) {
            ps->reader.position = at[2];
            quote_raw(ps);
        } else {
            failure(ps, &name, "missing");
        }
        return failure(ps, &name, ", expected [begin, end] with non-negative integers");
    }
    if (begin > end) return failure(ps, &name, "data_offsets [%lld, %lld] ends before it begins", (long long)begin, (long long)end);
    if (end > buffer_length)
        return failure(ps, &name,
                       "data_offsets [%lld, %lld] reach past the %lld-byte data buffer (file offset %llu > size %zu)",
                       (long long)begin, (long long)end, (long long)buffer_length,
                       /* unsigned: the header's length plus an `end` near 2^63 stays below 2^64 */
                       (unsigned long long)(ps->size - (size_t)buffer_length) + (unsigned long long)end, ps->size);
    /* The product skips zero dimensions: a tensor of no element whose other dimensions overflow would still
     * overflow any stride or slice computed from its shape. */
    int64_t expected = dtype_sizes[dtype];
    bool fits = true, empty = false;
    for (int64_t i = 0; i < rank && fits; i++) {
        const int64_t dimension = ps->dims[dims_at + (size_t)i];
        if (dimension == 0) empty = true;
        else fits = bnn_mul_nonneg(expected, dimension, &expected);
    }
    if (!fits) {
        failure(ps, &name, "shape ");
        bnn_text_dims(&ps->reason, ps->dims + dims_at, rank);
        return failure(ps, &name, " of %s is too large: the product of its non-zero dimensions times %d byte(s) exceeds %lld",
                       dtype_names[dtype], dtype_sizes[dtype], (long long)INT64_MAX);
    }
    if (empty) expected = 0;
    if (expected != end - begin) {
        failure(ps, &name, "shape ");
        bnn_text_dims(&ps->reason, ps->dims + dims_at, rank);
        return failure(ps, &name, " of %s needs %lld bytes, data_offsets [%lld, %lld] hold %lld", dtype_names[dtype],
                       (long long)expected, (long long)begin, (long long)end, (long long)(end - begin));
    }
    if (!grow((void **)&ps->entries, &ps->entry_capacity, ps->entry_count + 1, sizeof(entry))) return out_of_memory(ps);
    ps->entries[ps->entry_count] = (entry){
        .view = {.name = name, .dtype = (bnn_dtype)dtype, .rank = rank, .size = (size_t)expected, .offset = (size_t)begin},
        .dims_at = dims_at,
        .begin = begin,
        .end = end,
        .index = ps->entry_count,
    };
    ps->entry_count++;
    ps->reader.position = end_of_entry;
    return true;
}

static int compare_text(bnn_text_view a, bnn_text_view b) {
    const size_t n = a.length < b.length ? a.length : b.length;
    const int c = n == 0 ? 0 : memcmp(a.bytes, b.bytes, n);
    if (c != 0) return c;
    return a.length < b.length ? -1 : a.length > b.length;
}

static int by_name(const void *a, const void *b) {
    const entry *x = *(const entry *const *)a, *y = *(const entry *const *)b;
    const int c = compare_text(x->view.name, y->view.name);
    return c != 0 ? c : (x->index > y->index) - (x->index < y->index);
}

static int by_key(const void *a, const void *b) {
    const bnn_metadata_entry *x = *(const bnn_metadata_entry *const *)a, *y = *(const bnn_metadata_entry *const *)b;
    const int c = compare_text(x->key, y->key);
    return c != 0 ? c : (x > y) - (x < y);
}

static int by_offset(const void *a, const void *b) {
    const entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* Duplicate names and keys: sorted copies of pointers, neighbours compared. */
static bool check_unique(parser *ps) {
    if (ps->entry_count > 1) {
        const entry **sorted = malloc(ps->entry_count * sizeof *sorted);
        if (sorted == NULL) return out_of_memory(ps);
        for (size_t i = 0; i < ps->entry_count; i++) sorted[i] = &ps->entries[i];
        qsort(sorted, ps->entry_count, sizeof *sorted, by_name);
        const entry *twice = NULL;
        for (size_t i = 1; i < ps->entry_count && twice == NULL; i++)
            if (compare_text(sorted[i - 1]->view.name, sorted[i]->view.name) == 0) twice = sorted[i];
        free(sorted);
        if (twice != NULL) return failure(ps, &twice->view.name, "tensor name appears twice in the header");
    }
    if (ps->metadata_count > 1) {
        const bnn_metadata_entry **sorted = malloc(ps->metadata_count * sizeof *sorted);
        if (sorted == NULL) return out_of_memory(ps);
        for (size_t i = 0; i < ps->metadata_count; i++) sorted[i] = &ps->metadata[i];
        qsort(sorted, ps->metadata_count, sizeof *sorted, by_key);
        const bnn_metadata_entry *twice = NULL;
        for (size_t i = 1; i < ps->metadata_count && twice == NULL; i++)
            if (compare_text(sorted[i - 1]->key, sorted[i]->key) == 0) twice = sorted[i];
        free(sorted);
        if (twice != NULL) {
            failure(ps, NULL, "__metadata__ key \"");
            bnn_text_quote(&ps->reason, twice->key.bytes, twice->key.length);
            return failure(ps, NULL, "\" appears twice");
        }
    }
    return true;
}

/* The buffer must be covered exactly, without overlap or hole, as the format requires. */
static bool check_coverage(parser *ps, int64_t buffer_length) {
    if (ps->entry_count > 1) qsort(ps->entries, ps->entry_count, sizeof(entry), by_offset);
    int64_t covered = 0;
    const entry *previous = NULL;
    for (size_t i = 0; i < ps->entry_count; i++) {
        const entry *e = &ps->entries[i];
        if (e->begin < covered) {
            failure(ps, &e->view.name, "data_offsets [%lld, %lld] overlap tensor \"", (long long)e->begin, (long long)e->end);
            if (previous != NULL) bnn_text_quote(&ps->reason, previous->view.name.bytes, previous->view.name.length);
            return failure(ps, &e->view.name, "\", which ends at %lld", (long long)covered);
        }
        if (e->begin > covered)
            return failure(ps, NULL, "data buffer bytes %lld..<%lld belong to no tensor (holes are not allowed)",
                           (long long)covered, (long long)e->begin);
        covered = e->end;
        previous = e;
    }
    if (covered != buffer_length)
        return failure(ps, NULL,
                       "data buffer is %lld bytes but the tensors cover %lld: %lld trailing byte(s) belong to no tensor",
                       (long long)buffer_length, (long long)covered, (long long)(buffer_length - covered));
    return true;
}

/* Reads the header after its length and layout were checked; false with the reason written. */
static bool read_header(parser *ps, size_t header_length) {
    const uint8_t *header = ps->bytes + 8;
    const int64_t buffer_length = (int64_t)(ps->size - 8 - header_length);
    ps->reader.text = header;
    ps->reader.length = header_length;
    ps->reader.position = 0;
    if (!bnn_json_enter(&ps->reader)) return failure(ps, NULL, "header is not a JSON object");
    bool first = true, ok = true, metadata_seen = false;
    bnn_text_view name;
    while (bnn_json_next_key(&ps->reader, &first, &name, &ok)) {
        if (text_equals(name, "__metadata__")) {
            if (metadata_seen) return failure(ps, NULL, "__metadata__ appears twice");
            metadata_seen = true;
            if (!read_metadata(ps)) return false;
            continue;
        }
        if (!read_tensor(ps, name, buffer_length)) return false;
    }
    if (!ok) return malformed(ps);
    return check_unique(ps) && check_coverage(ps, buffer_length);
}

int bnn_safetensors_parse(const uint8_t *bytes, size_t size, bnn_safetensors **out, bnn_safetensors_error *error) {
    if (error != NULL) *error = (bnn_safetensors_error){0};
    if (out == NULL) return BNN_INVALID_ARGUMENT;
    *out = NULL;
    parser ps = {.bytes = bytes, .size = size};
    int status = BNN_INVALID_MODEL;
    file_storage *storage = NULL;

    if (bytes == NULL && size > 0) {
        failure(&ps, NULL, "no bytes (NULL) for a file of %zu bytes", size);
        status = BNN_INVALID_ARGUMENT;
        goto done;
    }
    if (size < 8) {
        failure(&ps, NULL, "file is %zu bytes, shorter than the 8-byte header length", size);
        goto done;
    }
    uint64_t declared = 0;
    for (int i = 0; i < 8; i++) declared |= (uint64_t)bytes[i] << (8 * i);
    /* The limit first: a value above it is refused as such, whatever the file's size. */
    if (declared > BNN_SAFETENSORS_MAX_HEADER) {
        failure(&ps, NULL, "header length %llu exceeds the limit of %zu bytes", (unsigned long long)declared,
                BNN_SAFETENSORS_MAX_HEADER);
        goto done;
    }
    const uint64_t available = (uint64_t)(size - 8);
    if (declared > available) {
        failure(&ps, NULL, "header length %llu exceeds the %llu bytes that follow it", (unsigned long long)declared,
                (unsigned long long)available);
        goto done;
    }
    const size_t header_length = (size_t)declared;
    if (header_length < 2) {
        failure(&ps, NULL, "header length %zu is too small for a JSON object", header_length);
        goto done;
    }
    if (bytes[8] != '{') {
        failure(&ps, NULL, "header does not start with '{' (found byte 0x%x at offset 8)", bytes[8]);
        goto done;
    }
    bnn_json_stats stats;
    bnn_json_error json_error;
    if (!bnn_json_check(bytes + 8, header_length, &stats, &json_error)) {
        failure(&ps, NULL, "header is not valid JSON at file offset %zu: %s", 8 + json_error.offset, json_error.message);
        goto done;
    }
    /* Room for every decoded string and its NUL: never more than the header's own length plus one per string. */
    ps.reader.pool_capacity = stats.string_bytes + stats.strings + 1;
    ps.reader.pool = malloc(ps.reader.pool_capacity);
    if (ps.reader.pool == NULL) {
        out_of_memory(&ps);
        goto done;
    }
    if (!read_header(&ps, header_length)) goto done;

    storage = calloc(1, sizeof *storage);
    if (storage == NULL || (ps.entry_count > 0 && (storage->views = malloc(ps.entry_count * sizeof(bnn_tensor_view))) == NULL)) {
        out_of_memory(&ps);
        goto done;
    }
    const uint8_t *buffer = bytes + 8 + header_length;
    for (size_t i = 0; i < ps.entry_count; i++) {
        entry *e = &ps.entries[i];
        e->view.shape = ps.dims + e->dims_at;
        e->view.data = buffer + e->begin;
        storage->views[i] = e->view;
    }
    storage->metadata = ps.metadata;
    storage->dims = ps.dims;
    storage->pool = ps.reader.pool;
    ps.metadata = NULL, ps.dims = NULL, ps.reader.pool = NULL;
    storage->public = (bnn_safetensors){
        .tensor_count = ps.entry_count,
        .tensors = storage->views,
        .metadata_count = ps.metadata_count,
        .metadata = storage->metadata,
        .header_length = header_length,
    };
    *out = &storage->public;
    storage = NULL;
    status = BNN_OK;

done:
    if (status != BNN_OK && ps.out_of_memory) status = BNN_RUN_FAILED;
    if (status != BNN_OK && error != NULL) {
        if (ps.fault.bytes != NULL) {
            error->tensor = malloc(ps.fault.length + 1);
            if (error->tensor != NULL) {
                memcpy(error->tensor, ps.fault.bytes, ps.fault.length);
                error->tensor[ps.fault.length] = '\0';
            }
        }
        error->reason = bnn_text_take(&ps.reason);
    }
    bnn_text_free(&ps.reason);
    if (storage != NULL) bnn_safetensors_free(&storage->public);
    free(ps.entries);
    free(ps.metadata);
    free(ps.dims);
    free(ps.reader.pool);
    return status;
}
