/* json.c — a small, strict JSON reader for safetensors headers and packed-model graphs.
 *
 * Two passes: bnn_json_check validates the whole text (so a syntax error is reported as such, before anything
 * the text means) and counts what the second pass will store; then a pull reader walks the checked text while
 * the caller interprets it, decoding strings into one pool sized by the counts. No tree is built, nothing
 * recurses, and memory follows the text's length, so hostile text can neither exhaust the stack nor make the
 * reader allocate more than a fixed multiple of its own size. */
#include "runtime_internal.h"

#include <stdio.h>
#include <string.h>

static bool is_space(uint8_t byte) { return byte == ' ' || byte == '\t' || byte == '\n' || byte == '\r'; }
static bool is_digit(uint8_t byte) { return byte >= '0' && byte <= '9'; }

static bool fail(bnn_json_error *error, size_t offset, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
static bool fail(bnn_json_error *error, size_t offset, const char *format, ...) {
    if (error != NULL) {
        error->offset = offset;
        va_list arguments;
        va_start(arguments, format);
        vsnprintf(error->message, sizeof error->message, format, arguments);
        va_end(arguments);
    }
    return false;
}

static int hex_digit(uint8_t byte) {
    if (byte >= '0' && byte <= '9') return byte - '0';
    if (byte >= 'a' && byte <= 'f') return byte - 'a' + 10;
    if (byte >= 'A' && byte <= 'F') return byte - 'A' + 10;
    return -1;
}

/* Four hex digits at text[*p]; advances past them. */
static bool hex4(const uint8_t *text, size_t length, size_t *p, uint32_t *value, bnn_json_error *error) {
    if (length - *p < 4) return fail(error, *p, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int digit = hex_digit(text[*p]);
        if (digit < 0) return fail(error, *p, "invalid hex digit in \\u escape");
        v = v << 4 | (uint32_t)digit;
        (*p)++;
    }
    *value = v;
    return true;
}

/* Length of the UTF-8 sequence starting at text[p] if it is well formed (no overlong form, no surrogate, at
 * most U+10FFFF: what a Swift String accepts), else 0. */
static size_t utf8_sequence(const uint8_t *text, size_t length, size_t p) {
    const uint8_t b0 = text[p];
    size_t count;
    uint8_t low = 0x80, high = 0xBF; /* allowed range of the second byte */
    if (b0 < 0x80) return 1;
    if (b0 >= 0xC2 && b0 <= 0xDF) count = 2;
    else if (b0 == 0xE0) count = 3, low = 0xA0;
    else if (b0 >= 0xE1 && b0 <= 0xEC) count = 3;
    else if (b0 == 0xED) count = 3, high = 0x9F;
    else if (b0 >= 0xEE && b0 <= 0xEF) count = 3;
    else if (b0 == 0xF0) count = 4, low = 0x90;
    else if (b0 >= 0xF1 && b0 <= 0xF3) count = 4;
    else if (b0 == 0xF4) count = 4, high = 0x8F;
    else return 0;
    if (length - p < count) return 0;
    if (text[p + 1] < low || text[p + 1] > high) return 0;
    for (size_t i = 2; i < count; i++)
        if ((text[p + i] & 0xC0) != 0x80) return 0;
    return count;
}

static size_t put_utf8(uint32_t code, uint8_t *out) {
    if (code < 0x80) {
        out[0] = (uint8_t)code;
        return 1;
    }
    if (code < 0x800) {
        out[0] = (uint8_t)(0xC0 | code >> 6);
        out[1] = (uint8_t)(0x80 | (code & 0x3F));
        return 2;
    }
    if (code < 0x10000) {
        out[0] = (uint8_t)(0xE0 | code >> 12);
        out[1] = (uint8_t)(0x80 | (code >> 6 & 0x3F));
        out[2] = (uint8_t)(0x80 | (code & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | code >> 18);
    out[1] = (uint8_t)(0x80 | (code >> 12 & 0x3F));
    out[2] = (uint8_t)(0x80 | (code >> 6 & 0x3F));
    out[3] = (uint8_t)(0x80 | (code & 0x3F));
    return 4;
}

/* The string whose opening quote is at text[*p]: checked, and decoded into `out` (room for the bytes between the
 * quotes; a decoded string is never longer) unless `out` is NULL. Advances past the closing quote. */
static bool scan_string(const uint8_t *text, size_t length, size_t *p, uint8_t *out, size_t *decoded,
                        size_t *raw_bytes, bnn_json_error *error) {
    const size_t start = *p;
    size_t q = start + 1, n = 0;
    for (;;) {
        if (q >= length) return fail(error, start, "unterminated string");
        const uint8_t byte = text[q];
        if (byte == '"') break;
        if (byte == '\\') {
            if (q + 1 >= length) return fail(error, q, "unterminated escape");
            const uint8_t escape = text[q + 1];
            q += 2;
            uint8_t simple = 0;
            switch (escape) {
            case '"': simple = '"'; break;
            case '\\': simple = '\\'; break;
            case '/': simple = '/'; break;
            case 'b': simple = '\b'; break;
            case 'f': simple = '\f'; break;
            case 'n': simple = '\n'; break;
            case 'r': simple = '\r'; break;
            case 't': simple = '\t'; break;
            case 'u': {
                uint32_t code;
                if (!hex4(text, length, &q, &code, error)) return false;
                if (code >= 0xD800 && code <= 0xDBFF) {
                    if (length - q < 2 || text[q] != '\\' || text[q + 1] != 'u')
                        return fail(error, q, "high surrogate without a low surrogate");
                    q += 2;
                    uint32_t low;
                    if (!hex4(text, length, &q, &low, error)) return false;
                    if (low < 0xDC00 || low > 0xDFFF)
                        return fail(error, q, "high surrogate followed by a non-low surrogate");
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                } else if (code >= 0xDC00 && code <= 0xDFFF) {
                    return fail(error, q, "low surrogate without a high surrogate");
                }
                uint8_t bytes[4];
                size_t count = put_utf8(code, bytes);
                if (out != NULL) memcpy(out + n, bytes, count);
                n += count;
                continue;
            }
            default:
                if (escape >= 0x20 && escape < 0x7F) return fail(error, q - 1, "invalid escape \\%c", escape);
                return fail(error, q - 1, "invalid escape byte 0x%x", escape);
            }
            if (out != NULL) out[n] = simple;
            n++;
            continue;
        }
        if (byte < 0x20) return fail(error, q, "raw control byte 0x%x inside a string", byte);
        size_t count = utf8_sequence(text, length, q);
        if (count == 0) return fail(error, start, "string is not valid UTF-8");
        if (out != NULL) memcpy(out + n, text + q, count);
        n += count;
        q += count;
    }
    if (raw_bytes != NULL) *raw_bytes = q - start - 1;
    if (decoded != NULL) *decoded = n;
    *p = q + 1;
    return true;
}

/* The number at text[*p] by JSON's grammar; advances past it. */
static bool scan_number(const uint8_t *text, size_t length, size_t *p, bnn_json_error *error) {
    size_t q = *p;
    if (text[q] == '-') q++;
    if (q >= length || !is_digit(text[q])) return fail(error, q, "number without digits");
    if (text[q] == '0') {
        q++;
    } else {
        while (q < length && is_digit(text[q])) q++;
    }
    if (q < length && text[q] == '.') {
        q++;
        if (q >= length || !is_digit(text[q])) return fail(error, q, "number with no digit after '.'");
        while (q < length && is_digit(text[q])) q++;
    }
    if (q < length && (text[q] == 'e' || text[q] == 'E')) {
        q++;
        if (q < length && (text[q] == '+' || text[q] == '-')) q++;
        if (q >= length || !is_digit(text[q])) return fail(error, q, "number with no digit in the exponent");
        while (q < length && is_digit(text[q])) q++;
    }
    *p = q;
    return true;
}

static bool scan_literal(const uint8_t *text, size_t length, size_t *p, bnn_json_error *error) {
    static const char *const literals[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(literals[i]);
        if (text[*p] == (uint8_t)literals[i][0]) {
            if (length - *p < n || memcmp(text + *p, literals[i], n) != 0)
                return fail(error, *p, "invalid literal, expected %s", literals[i]);
            *p += n;
            return true;
        }
    }
    return fail(error, *p, "invalid literal");
}

static void skip_space(const uint8_t *text, size_t length, size_t *p) {
    while (*p < length && is_space(text[*p])) (*p)++;
}

bool bnn_json_check(const uint8_t *text, size_t length, bnn_json_stats *stats, bnn_json_error *error) {
    /* The open containers, innermost last: '{' or '['. An explicit stack instead of recursion. */
    uint8_t open[BNN_JSON_MAX_DEPTH];
    int depth = 0;
    size_t p = 0;
    *stats = (bnn_json_stats){0};
    if (text == NULL) return fail(error, 0, "no text");
    skip_space(text, length, &p);
    bool root_object = p < length && text[p] == '{';

    enum { VALUE, KEY, AFTER } state = VALUE;
    for (;;) {
        if (state == KEY) {
            skip_space(text, length, &p);
            if (p >= length || text[p] != '"') return fail(error, p, "expected a quoted key");
            size_t raw = 0;
            if (!scan_string(text, length, &p, NULL, NULL, &raw, error)) return false;
            stats->strings++;
            stats->string_bytes += raw;
            if (depth == 1 && root_object) stats->root_members++;
            skip_space(text, length, &p);
            if (p >= length || text[p] != ':') return fail(error, p, "expected ':' after a key");
            p++;
            state = VALUE;
            continue;
        }
        if (state == VALUE) {
            skip_space(text, length, &p);
            if (p >= length) return fail(error, p, "unexpected end of the text, expected a value");
            const uint8_t byte = text[p];
            if (byte == '{' || byte == '[') {
                if (depth == BNN_JSON_MAX_DEPTH)
                    return fail(error, p, "nesting deeper than %d levels", BNN_JSON_MAX_DEPTH);
                open[depth++] = byte;
                p++;
                skip_space(text, length, &p);
                if (p < length && text[p] == (byte == '{' ? '}' : ']')) {
                    p++;
                    depth--;
                    state = AFTER;
                } else {
                    state = byte == '{' ? KEY : VALUE;
                }
                continue;
            }
            if (byte == '"') {
                size_t raw = 0;
                if (!scan_string(text, length, &p, NULL, NULL, &raw, error)) return false;
                stats->strings++;
                stats->string_bytes += raw;
            } else if (byte == '-' || is_digit(byte)) {
                if (!scan_number(text, length, &p, error)) return false;
                stats->numbers++;
            } else if (byte == 't' || byte == 'f' || byte == 'n') {
                if (!scan_literal(text, length, &p, error)) return false;
            } else {
                return fail(error, p, "unexpected byte 0x%x, expected a JSON value", byte);
            }
            state = AFTER;
            continue;
        }
        /* AFTER a value: the end of the text, or a separator or closer of the innermost container. */
        skip_space(text, length, &p);
        if (depth == 0) {
            if (p != length) return fail(error, p, "unexpected byte 0x%x after the end of the JSON value", text[p]);
            return true;
        }
        const uint8_t container = open[depth - 1];
        if (p >= length)
            return fail(error, p, "unexpected end of the text inside %s", container == '{' ? "an object" : "an array");
        if (text[p] == ',') {
            p++;
            state = container == '{' ? KEY : VALUE;
        } else if (text[p] == (container == '{' ? '}' : ']')) {
            p++;
            depth--;
        } else {
            return fail(error, p, container == '{' ? "expected ',' or '}' in an object" : "expected ',' or ']' in an array");
        }
    }
}

const char *bnn_json_kind_name(bnn_json_kind kind) {
    switch (kind) {
    case BNN_JSON_OBJECT: return "an object";
    case BNN_JSON_ARRAY: return "an array";
    case BNN_JSON_STRING: return "a string";
    case BNN_JSON_NUMBER: return "a number";
    case BNN_JSON_BOOL: return "a boolean";
    case BNN_JSON_NULL: return "null";
    case BNN_JSON_INVALID: break;
    }
    return "not JSON";
}

static void reader_space(bnn_json_reader *r) { skip_space(r->text, r->length, &r->position); }

bnn_json_kind bnn_json_peek(bnn_json_reader *r) {
    reader_space(r);
    if (r->position >= r->length) return BNN_JSON_INVALID;
    switch (r->text[r->position]) {
    case '{': return BNN_JSON_OBJECT;
    case '[': return BNN_JSON_ARRAY;
    case '"': return BNN_JSON_STRING;
    case 't':
    case 'f': return BNN_JSON_BOOL;
    case 'n': return BNN_JSON_NULL;
    default: return r->text[r->position] == '-' || is_digit(r->text[r->position]) ? BNN_JSON_NUMBER : BNN_JSON_INVALID;
    }
}

bool bnn_json_enter(bnn_json_reader *r) {
    reader_space(r);
    if (r->position >= r->length || (r->text[r->position] != '{' && r->text[r->position] != '[')) return false;
    r->position++;
    return true;
}

/* Consumes the separator before the next member or element, or the closer; shared by keys and elements. */
static bool next_member(bnn_json_reader *r, bool *first, uint8_t closer, bool *ok) {
    *ok = false;
    reader_space(r);
    if (r->position >= r->length) return false;
    if (r->text[r->position] == closer) {
        r->position++;
        *ok = true;
        return false;
    }
    if (!*first) {
        if (r->text[r->position] != ',') return false;
        r->position++;
        reader_space(r);
    }
    *first = false;
    *ok = true;
    return true;
}

bool bnn_json_string(bnn_json_reader *r, bnn_text_view *value) {
    reader_space(r);
    if (r->position >= r->length || r->text[r->position] != '"') return false;
    /* The pool holds every string's raw bytes plus a NUL each (bnn_json_stats), so this never runs out on
     * checked text; the test guards against a caller that sized it otherwise. */
    size_t raw_end = r->position + 1;
    while (raw_end < r->length && r->text[raw_end] != '"') raw_end += r->text[raw_end] == '\\' ? 2 : 1;
    if (raw_end > r->length) raw_end = r->length;
    const size_t bound = raw_end - r->position - 1; /* bytes between the quotes */
    if (r->pool == NULL || r->pool_capacity - r->pool_used < bound + 1) return false;
    uint8_t *out = (uint8_t *)r->pool + r->pool_used;
    size_t decoded = 0;
    if (!scan_string(r->text, r->length, &r->position, out, &decoded, NULL, NULL)) return false;
    out[decoded] = 0;
    r->pool_used += decoded + 1;
    *value = (bnn_text_view){(const char *)out, decoded};
    return true;
}

bool bnn_json_next_key(bnn_json_reader *r, bool *first, bnn_text_view *key, bool *ok) {
    if (!next_member(r, first, '}', ok)) return false;
    if (!bnn_json_string(r, key)) {
        *ok = false;
        return false;
    }
    reader_space(r);
    if (r->position >= r->length || r->text[r->position] != ':') {
        *ok = false;
        return false;
    }
    r->position++;
    return true;
}

bool bnn_json_next_element(bnn_json_reader *r, bool *first, bool *ok) { return next_member(r, first, ']', ok); }

bool bnn_json_number(bnn_json_reader *r, bnn_text_view *raw) {
    reader_space(r);
    const size_t start = r->position;
    if (start >= r->length || !(r->text[start] == '-' || is_digit(r->text[start]))) return false;
    if (!scan_number(r->text, r->length, &r->position, NULL)) return false;
    *raw = (bnn_text_view){(const char *)r->text + start, r->position - start};
    return true;
}

bool bnn_json_bool(bnn_json_reader *r, bool *value) {
    reader_space(r);
    const size_t left = r->length - r->position;
    if (r->position < r->length && left >= 4 && memcmp(r->text + r->position, "true", 4) == 0) {
        r->position += 4;
        *value = true;
        return true;
    }
    if (r->position < r->length && left >= 5 && memcmp(r->text + r->position, "false", 5) == 0) {
        r->position += 5;
        *value = false;
        return true;
    }
    return false;
}

bool bnn_json_skip(bnn_json_reader *r, bnn_text_view *raw) {
    reader_space(r);
    const size_t start = r->position;
    if (start >= r->length) return false;
    const uint8_t byte = r->text[start];
    bool ok = true;
    if (byte == '"') {
        ok = scan_string(r->text, r->length, &r->position, NULL, NULL, NULL, NULL);
    } else if (byte == '-' || is_digit(byte)) {
        ok = scan_number(r->text, r->length, &r->position, NULL);
    } else if (byte == 't' || byte == 'f' || byte == 'n') {
        ok = scan_literal(r->text, r->length, &r->position, NULL);
    } else if (byte == '{' || byte == '[') {
        /* Checked text: brackets balance outside strings, so counting them finds the end. */
        size_t depth = 0;
        do {
            const uint8_t c = r->text[r->position];
            if (c == '"') {
                if (!scan_string(r->text, r->length, &r->position, NULL, NULL, NULL, NULL)) return false;
                continue;
            }
            if (c == '{' || c == '[') depth++;
            else if (c == '}' || c == ']') depth--;
            r->position++;
        } while (depth > 0 && r->position < r->length);
        ok = depth == 0;
    } else {
        ok = false;
    }
    if (ok && raw != NULL) *raw = (bnn_text_view){(const char *)r->text + start, r->position - start};
    return ok;
}

int bnn_json_integer(bnn_text_view raw, int64_t *value) {
    size_t i = 0;
    bool negative = false;
    if (raw.length > 0 && raw.bytes[0] == '-') {
        negative = true;
        i = 1;
    }
    if (i >= raw.length) return 1;
    for (size_t j = i; j < raw.length; j++)
        if (!is_digit((uint8_t)raw.bytes[j])) return 1;
    /* Accumulated on the negative side, which holds INT64_MIN. */
    int64_t v = 0;
    for (; i < raw.length; i++) {
        const int64_t digit = raw.bytes[i] - '0';
        if (v < (INT64_MIN + digit) / 10) return 2;
        v = v * 10 - digit;
    }
    if (!negative) {
        if (v == INT64_MIN) return 2;
        v = -v;
    }
    *value = v;
    return 0;
}
