/* runtime_internal.h — declarations shared by the runtime's files; not part of the public API. */
#ifndef BNN_RUNTIME_INTERNAL_H
#define BNN_RUNTIME_INTERNAL_H

/* POSIX (open, fstat, pthread) on top of strict C11; every runtime file includes this header first. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "bnn_model_file.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Messages ------------------------------------------------------------------------------------ */

/* A growing message. Appends never fail visibly: after an allocation failure the text is dropped and
 * `failed` set, and bnn_text_take returns NULL (callers then fall back to the status's fixed description). */
typedef struct bnn_text {
    char *data;
    size_t length, capacity;
    bool failed;
} bnn_text;

/* Names and raw values from a file are quoted in messages with at most this many bytes, so that a hostile
 * file cannot make a message as long as itself. */
enum { BNN_TEXT_QUOTE_LIMIT = 200 };

/* Appends formatted text (printf rules); after a failed allocation the builder appends nothing more. */
void bnn_text_printf(bnn_text *text, const char *format, ...) __attribute__((format(printf, 2, 3)));
/* bnn_text_printf with a va_list. */
void bnn_text_vprintf(bnn_text *text, const char *format, va_list arguments);
/* Appends `length` bytes of file text with control characters and backslashes escaped (\n, \u0001, \\),
 * cut at BNN_TEXT_QUOTE_LIMIT bytes (on a UTF-8 boundary) with "…" appended. */
void bnn_text_quote(bnn_text *text, const char *bytes, size_t length);
/* Appends "[d0, d1, ...]" (Swift's spelling of an array of integers). */
void bnn_text_dims(bnn_text *text, const int64_t *dims, int64_t count);
/* The message (malloc'd, owned by the caller), or NULL; the builder is left empty. */
char *bnn_text_take(bnn_text *text);
/* Releases the builder's memory. */
void bnn_text_free(bnn_text *text);

/* ---- Checked arithmetic --------------------------------------------------------------------------- */

/* a·b into *out; false on overflow or a negative operand. */
static inline bool bnn_mul_nonneg(int64_t a, int64_t b, int64_t *out) {
    if (a < 0 || b < 0) return false;
    return !__builtin_mul_overflow(a, b, out);
}

/* ---- JSON ------------------------------------------------------------------------------------------ */

/* Deep nesting is never needed by a header or a graph; the limit keeps hostile input bounded. */
enum { BNN_JSON_MAX_DEPTH = 64 };

/* Where and why text is not JSON: byte offset in the text and a short description. */
typedef struct bnn_json_error {
    size_t offset;
    char message[160];
} bnn_json_error;

/* Counts gathered by bnn_json_check, used to size the arrays the second pass fills (so allocation follows the
 * text's length). */
typedef struct bnn_json_stats {
    size_t strings;      /* string values and keys */
    size_t string_bytes; /* bytes between their quotes (decoded strings are never longer) */
    size_t numbers;
    size_t root_members; /* members of the root value if it is an object */
} bnn_json_stats;

/* Checks that `text` is exactly one JSON value with optional surrounding whitespace (RFC 8259: strings of valid
 * UTF-8 without raw control bytes, escapes including surrogate pairs, numbers by the grammar), nested at most
 * BNN_JSON_MAX_DEPTH deep. Allocates nothing, recurses nowhere. */
bool bnn_json_check(const uint8_t *text, size_t length, bnn_json_stats *stats, bnn_json_error *error);

/* The kinds of JSON values. */
typedef enum bnn_json_kind {
    BNN_JSON_OBJECT,
    BNN_JSON_ARRAY,
    BNN_JSON_STRING,
    BNN_JSON_NUMBER,
    BNN_JSON_BOOL,
    BNN_JSON_NULL,
    BNN_JSON_INVALID
} bnn_json_kind;

/* "an object", "a string", ... for messages. */
const char *bnn_json_kind_name(bnn_json_kind kind);

/* A reader over text that bnn_json_check accepted. Each call still checks bounds, so a reader over other text
 * fails (returns false / BNN_JSON_INVALID) rather than reading out of bounds. */
typedef struct bnn_json_reader {
    const uint8_t *text;
    size_t length, position;
    /* Where decoded strings go: a buffer of at least string_bytes + strings bytes (bnn_json_stats). */
    char *pool;
    size_t pool_used, pool_capacity;
} bnn_json_reader;

/* Kind of the value at the reader (after whitespace). */
bnn_json_kind bnn_json_peek(bnn_json_reader *reader);
/* Consumes '{' / '['. */
bool bnn_json_enter(bnn_json_reader *reader);
/* Inside an object: true with the next key decoded (and its ':' consumed), or false at the closing '}'
 * (consumed) with *ok true, or false with *ok false on malformed text. `first` is true before the first key. */
bool bnn_json_next_key(bnn_json_reader *reader, bool *first, bnn_text_view *key, bool *ok);
/* Inside an array: true if another element follows (its ',' consumed), false at ']' (consumed). */
bool bnn_json_next_element(bnn_json_reader *reader, bool *first, bool *ok);
/* Decodes a string value into the pool (NUL-terminated). */
bool bnn_json_string(bnn_json_reader *reader, bnn_text_view *value);
/* The raw text of a number. */
bool bnn_json_number(bnn_json_reader *reader, bnn_text_view *raw);
/* Consumes true or false. */
bool bnn_json_bool(bnn_json_reader *reader, bool *value);
/* Skips any value; *raw (if not NULL) is its text. */
bool bnn_json_skip(bnn_json_reader *reader, bnn_text_view *raw);

/* A number's text as an integer: 0 if it is one that fits int64_t, 1 if it has a fraction or exponent, 2 if it
 * is an integer outside int64_t. */
int bnn_json_integer(bnn_text_view raw, int64_t *value);

/* ---- Files ----------------------------------------------------------------------------------------- */

/* Reads a whole regular file into malloc'd memory. BNN_OK, or BNN_IO_ERROR / BNN_RUN_FAILED with a message
 * "<path>: cannot open: <strerror>" etc. appended to `error`. */
int bnn_read_file(const char *path, uint8_t **bytes, size_t *size, bnn_text *error);

/* Parses a packed model from a malloc'd buffer it takes ownership of (freed on failure too). */
int bnn_packed_model_adopt(uint8_t *bytes, size_t size, const char *label, bnn_packed_model **out, bnn_text *error);

#endif /* BNN_RUNTIME_INTERNAL_H */
