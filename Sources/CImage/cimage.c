// JPEG through libjpeg-turbo's libjpeg API, PNG through libpng. Both libraries report fatal errors through a
// handler that must not return: each decode installs one that records the message and longjmps back here, so a
// corrupt file becomes a status, never an exit() or abort(). Pointers that change after setjmp are volatile.
#include "cimage.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

static const uint8_t png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

static void set_message(cimage_result *result, int status, const char *format, ...) {
    result->status = status;
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(result->message, sizeof result->message, format, arguments);
    va_end(arguments);
}

static int detect(const uint8_t *data, size_t size) {
    if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return CIMAGE_FORMAT_JPEG;
    if (size >= 8 && memcmp(data, png_signature, 8) == 0) return CIMAGE_FORMAT_PNG;
    return CIMAGE_FORMAT_UNKNOWN;
}

static int check_size(cimage_result *result, uint64_t width, uint64_t height) {
    if (width == 0 || height == 0 || width * height > CIMAGE_MAX_PIXELS) {
        set_message(result, CIMAGE_BAD_SIZE, "%llu×%llu pixels is outside the accepted size (1 to %llu pixels)",
                    (unsigned long long)width, (unsigned long long)height, (unsigned long long)CIMAGE_MAX_PIXELS);
        return 0;
    }
    return 1;
}

static int start(const uint8_t *data, size_t size, cimage_result *result) {
    memset(result, 0, sizeof *result);
    if (data == NULL && size > 0) {
        set_message(result, CIMAGE_BAD_ARGUMENT, "no data");
        return 0;
    }
    if (size == 0) {
        set_message(result, CIMAGE_NOT_AN_IMAGE, "the file is empty (0 bytes)");
        return 0;
    }
    result->format = detect(data, size);
    if (result->format == CIMAGE_FORMAT_UNKNOWN) {
        char first[3 * 8 + 1] = {0};
        size_t shown = size < 8 ? size : 8;
        for (size_t i = 0; i < shown; i++) snprintf(first + 3 * i, 4, i + 1 < shown ? "%02X " : "%02X", data[i]);
        set_message(result, CIMAGE_NOT_AN_IMAGE, "not a JPEG or PNG image (first bytes: %s)", first);
        return 0;
    }
    return 1;
}

// MARK: JPEG

typedef struct {
    struct jpeg_error_mgr base;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} jpeg_failure;

static void jpeg_fail(j_common_ptr info) {
    jpeg_failure *failure = (jpeg_failure *)info->err;
    failure->base.format_message(info, failure->message);
    longjmp(failure->jump, 1);
}

// Warnings are kept quiet, except the end of the data before the end of the image: libjpeg would fill the rest
// with grey and carry on, which would train on a damaged image without a word.
static void jpeg_message(j_common_ptr info, int level) {
    if (level < 0 && info->err->msg_code == JWRN_JPEG_EOF) jpeg_fail(info);
}

static void jpeg_silent(j_common_ptr info) { (void)info; }

static int jpeg_read(const uint8_t *data, size_t size, int scale_eighths, int header_only, cimage_result *result) {
    struct jpeg_decompress_struct info;
    jpeg_failure failure;
    uint8_t *volatile pixels = NULL;
    uint8_t *volatile row = NULL;
    memset(&info, 0, sizeof info);
    info.err = jpeg_std_error(&failure.base);
    failure.base.error_exit = jpeg_fail;
    failure.base.emit_message = jpeg_message;
    failure.base.output_message = jpeg_silent;
    failure.message[0] = 0;
    if (setjmp(failure.jump)) {
        jpeg_destroy_decompress(&info);
        free(pixels);
        free(row);
        set_message(result, CIMAGE_CORRUPT, "corrupt JPEG: %s", failure.message);
        return result->status;
    }
    jpeg_create_decompress(&info);
    jpeg_mem_src(&info, data, (unsigned long)size);
    if (jpeg_read_header(&info, TRUE) != JPEG_HEADER_OK) {
        jpeg_destroy_decompress(&info);
        set_message(result, CIMAGE_CORRUPT, "corrupt JPEG: no image in the file (tables only)");
        return result->status;
    }
    result->source_width = result->width = (int)info.image_width;
    result->source_height = result->height = (int)info.image_height;
    if (!check_size(result, info.image_width, info.image_height) || header_only) {
        jpeg_destroy_decompress(&info);
        return result->status;
    }
    int cmyk = info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK;
    int inverted = cmyk && info.saw_Adobe_marker;
    info.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    info.scale_num = (unsigned)scale_eighths;
    info.scale_denom = 8;
    jpeg_start_decompress(&info);
    size_t width = info.output_width, height = info.output_height;
    size_t components = (size_t)info.output_components;
    if (components != (cmyk ? 4u : 3u)) {
        jpeg_destroy_decompress(&info);
        set_message(result, CIMAGE_CORRUPT, "corrupt JPEG: %d components after colour conversion",
                    info.output_components);
        return result->status;
    }
    pixels = malloc(width * height * 3);
    if (cmyk) row = malloc(width * 4);
    if (pixels == NULL || (cmyk && row == NULL)) {
        jpeg_destroy_decompress(&info);
        free(pixels);
        free(row);
        set_message(result, CIMAGE_NO_MEMORY, "out of memory for %zu×%zu pixels", width, height);
        return result->status;
    }
    while (info.output_scanline < info.output_height) {
        size_t y = info.output_scanline;
        uint8_t *target = pixels + y * width * 3;
        JSAMPROW rows[1] = {cmyk ? row : target};
        if (jpeg_read_scanlines(&info, rows, 1) != 1) {  // only a suspending source returns 0; this one never does
            jpeg_destroy_decompress(&info);
            free(pixels);
            free(row);
            set_message(result, CIMAGE_CORRUPT, "corrupt JPEG: no data for row %zu", y);
            return result->status;
        }
        if (!cmyk) continue;
        for (size_t x = 0; x < width; x++) {
            unsigned k = row[4 * x + 3];
            for (int c = 0; c < 3; c++) {
                unsigned v = row[4 * x + c];
                // Adobe stores 255 − C; otherwise C itself. Channel = (255 − C)(255 − K) / 255, rounded.
                unsigned product = inverted ? v * k : (255 - v) * (255 - k);
                target[3 * x + c] = (uint8_t)((product + 127) / 255);
            }
        }
    }
    jpeg_finish_decompress(&info);
    jpeg_destroy_decompress(&info);
    free(row);
    result->width = (int)width;
    result->height = (int)height;
    result->pixels = pixels;
    result->status = CIMAGE_OK;
    return CIMAGE_OK;
}

// MARK: PNG

typedef struct {
    const uint8_t *data;
    size_t size, offset;
    char message[160];
} png_source;

static void png_fail(png_structp png, png_const_charp message) {
    png_source *source = png_get_error_ptr(png);
    snprintf(source->message, sizeof source->message, "%s", message);
    png_longjmp(png, 1);
}

static void png_warn(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;
}

static void png_read_bytes(png_structp png, png_bytep out, size_t count) {
    png_source *source = png_get_io_ptr(png);
    if (count > source->size - source->offset) {
        png_error(png, "the file ends before the image does (truncated)");
    }
    memcpy(out, source->data + source->offset, count);
    source->offset += count;
}

static int png_read(const uint8_t *data, size_t size, int header_only, cimage_result *result) {
    png_source source = {.data = data, .size = size, .offset = 0, .message = {0}};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &source, png_fail, png_warn);
    if (png == NULL) {
        set_message(result, CIMAGE_NO_MEMORY, "out of memory for the PNG reader");
        return result->status;
    }
    png_infop info = png_create_info_struct(png);
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (info == NULL) {
        png_destroy_read_struct(&png, NULL, NULL);
        set_message(result, CIMAGE_NO_MEMORY, "out of memory for the PNG reader");
        return result->status;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(pixels);
        free(rows);
        set_message(result, CIMAGE_CORRUPT, "corrupt PNG: %s", source.message);
        return result->status;
    }
    png_set_read_fn(png, &source, png_read_bytes);
    png_read_info(png, info);
    png_uint_32 width = png_get_image_width(png, info), height = png_get_image_height(png, info);
    result->source_width = result->width = (int)width;
    result->source_height = result->height = (int)height;
    if (!check_size(result, width, height) || header_only) {
        png_destroy_read_struct(&png, &info, NULL);
        return result->status;
    }
    int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    if (depth == 16) png_set_scale_16(png);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (color & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
    if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t stride = png_get_rowbytes(png, info);
    if (stride != (size_t)width * 3) {
        png_destroy_read_struct(&png, &info, NULL);
        set_message(result, CIMAGE_CORRUPT, "corrupt PNG: %zu bytes per row after conversion to RGB", stride);
        return result->status;
    }
    pixels = malloc((size_t)width * height * 3);
    rows = malloc(sizeof(png_bytep) * height);
    if (pixels == NULL || rows == NULL) {
        png_destroy_read_struct(&png, &info, NULL);
        free(pixels);
        free(rows);
        set_message(result, CIMAGE_NO_MEMORY, "out of memory for %u×%u pixels", (unsigned)width, (unsigned)height);
        return result->status;
    }
    for (png_uint_32 y = 0; y < height; y++) rows[y] = pixels + (size_t)y * stride;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    result->pixels = pixels;
    result->status = CIMAGE_OK;
    return CIMAGE_OK;
}

// MARK: API

int cimage_probe(const uint8_t *data, size_t size, cimage_result *result) {
    if (result == NULL) return CIMAGE_BAD_ARGUMENT;
    if (!start(data, size, result)) return result->status;
    return result->format == CIMAGE_FORMAT_JPEG ? jpeg_read(data, size, 8, 1, result) : png_read(data, size, 1, result);
}

int cimage_decode(const uint8_t *data, size_t size, int scale_eighths, cimage_result *result) {
    if (result == NULL) return CIMAGE_BAD_ARGUMENT;
    if (!start(data, size, result)) return result->status;
    if (scale_eighths < 1 || scale_eighths > 8) {
        set_message(result, CIMAGE_BAD_ARGUMENT, "scale %d/8 is outside 1/8...8/8", scale_eighths);
        return result->status;
    }
    return result->format == CIMAGE_FORMAT_JPEG ? jpeg_read(data, size, scale_eighths, 0, result)
                                                : png_read(data, size, 0, result);
}

void cimage_free(uint8_t *pixels) { free(pixels); }

int cimage_encode_jpeg(const uint8_t *rgb, int width, int height, int quality, uint8_t **bytes, size_t *size,
                       char *message) {
    if (message != NULL) message[0] = '\0';
    if (rgb == NULL || bytes == NULL || size == NULL || quality < 1 || quality > 100) {
        if (message != NULL) snprintf(message, 200, "a null pointer or a quality outside 1...100");
        return CIMAGE_BAD_ARGUMENT;
    }
    *bytes = NULL;
    *size = 0;
    if (width <= 0 || height <= 0 || (uint64_t)width * (uint64_t)height > CIMAGE_MAX_PIXELS) {
        if (message != NULL) snprintf(message, 200, "%d×%d pixels is outside the accepted size", width, height);
        return CIMAGE_BAD_SIZE;
    }
    /* The buffer jpeg_mem_dest grows lives in heap memory, so that it is still known after a longjmp. */
    struct { unsigned char *buffer; unsigned long length; } *out = calloc(1, sizeof *out);
    if (out == NULL) {
        if (message != NULL) snprintf(message, 200, "out of memory");
        return CIMAGE_NO_MEMORY;
    }
    struct jpeg_compress_struct info;
    jpeg_failure failure; /* the decoder's: records the message and longjmps back */
    info.err = jpeg_std_error(&failure.base);
    failure.base.error_exit = jpeg_fail;
    if (setjmp(failure.jump)) {
        jpeg_destroy_compress(&info);
        free(out->buffer);
        free(out);
        if (message != NULL) snprintf(message, 200, "%s", failure.message);
        return CIMAGE_CORRUPT;
    }
    jpeg_create_compress(&info);
    jpeg_mem_dest(&info, &out->buffer, &out->length);
    info.image_width = (JDIMENSION)width;
    info.image_height = (JDIMENSION)height;
    info.input_components = 3;
    info.in_color_space = JCS_RGB;
    jpeg_set_defaults(&info);
    jpeg_set_quality(&info, quality, TRUE);
    jpeg_start_compress(&info, TRUE);
    while (info.next_scanline < info.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)info.next_scanline * (size_t)width * 3);
        jpeg_write_scanlines(&info, &row, 1);
    }
    jpeg_finish_compress(&info);
    jpeg_destroy_compress(&info);
    *bytes = out->buffer;
    *size = (size_t)out->length;
    free(out);
    return CIMAGE_OK;
}
