/* text.c — the message builder: every error of the reader is written here, so that messages can name the file,
 * layer and tensor at fault without fixed-size buffers, and a name from a hostile file stays short. */
#include "runtime_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Makes room for `extra` more bytes plus a NUL; false (and the text dropped) if memory runs out. */
static bool reserve(bnn_text *text, size_t extra) {
    if (text->failed) return false;
    if (extra > SIZE_MAX / 2 - text->length - 1) {
        bnn_text_free(text);
        text->failed = true;
        return false;
    }
    size_t needed = text->length + extra + 1;
    if (needed <= text->capacity) return true;
    size_t capacity = text->capacity < 128 ? 128 : text->capacity;
    while (capacity < needed) capacity *= 2;
    char *grown = realloc(text->data, capacity);
    if (grown == NULL) {
        bnn_text_free(text);
        text->failed = true;
        return false;
    }
    text->data = grown;
    text->capacity = capacity;
    return true;
}

static void append(bnn_text *text, const char *bytes, size_t length) {
    if (!reserve(text, length)) return;
    memcpy(text->data + text->length, bytes, length);
    text->length += length;
    text->data[text->length] = '\0';
}

void bnn_text_vprintf(bnn_text *text, const char *format, va_list arguments) {
    if (text->failed) return;
    va_list copy;
    va_copy(copy, arguments);
    int needed = vsnprintf(NULL, 0, format, copy);
    va_end(copy);
    if (needed < 0 || !reserve(text, (size_t)needed)) return;
    vsnprintf(text->data + text->length, (size_t)needed + 1, format, arguments);
    text->length += (size_t)needed;
}

void bnn_text_printf(bnn_text *text, const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    bnn_text_vprintf(text, format, arguments);
    va_end(arguments);
}

void bnn_text_quote(bnn_text *text, const char *bytes, size_t length) {
    size_t limit = length;
    bool cut = false;
    if (limit > BNN_TEXT_QUOTE_LIMIT) {
        limit = BNN_TEXT_QUOTE_LIMIT;
        /* Back up to the start of a UTF-8 sequence so the message stays valid UTF-8. */
        while (limit > 0 && ((unsigned char)bytes[limit] & 0xC0) == 0x80) limit--;
        cut = true;
    }
    for (size_t i = 0; i < limit; i++) {
        unsigned char byte = (unsigned char)bytes[i];
        char escaped[8];
        switch (byte) {
        case '\n': append(text, "\\n", 2); break;
        case '\r': append(text, "\\r", 2); break;
        case '\t': append(text, "\\t", 2); break;
        case '\\': append(text, "\\\\", 2); break;
        default:
            if (byte < 0x20 || byte == 0x7F) {
                snprintf(escaped, sizeof escaped, "\\u%04x", byte);
                append(text, escaped, 6);
            } else {
                append(text, (const char *)&bytes[i], 1);
            }
        }
    }
    if (cut) append(text, "…", strlen("…"));
}

void bnn_text_dims(bnn_text *text, const int64_t *dims, int64_t count) {
    append(text, "[", 1);
    for (int64_t i = 0; i < count; i++) bnn_text_printf(text, i == 0 ? "%lld" : ", %lld", (long long)dims[i]);
    append(text, "]", 1);
}

char *bnn_text_take(bnn_text *text) {
    char *result = text->failed ? NULL : text->data;
    if (!text->failed && result == NULL) result = calloc(1, 1); /* an empty message is still a message */
    *text = (bnn_text){0};
    return result;
}

void bnn_text_free(bnn_text *text) {
    free(text->data);
    text->data = NULL;
    text->length = text->capacity = 0;
}
