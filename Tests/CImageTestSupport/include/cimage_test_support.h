// Encoders for the image-folder tests: they write small JPEG and PNG files of known pixels (the decoder under test
// is Sources/CImage). Each returns 0 on success, -1 on failure.
#ifndef CIMAGE_TEST_SUPPORT_H
#define CIMAGE_TEST_SUPPORT_H

#include <stdint.h>

/// Writes a baseline JPEG of `components` samples per pixel: 1 (grayscale), 3 (RGB) or 4 (CMYK, stored inverted
/// with an Adobe marker, as Photoshop does: the bytes given are the stored ones). Quality 1...100; no chroma
/// subsampling, so a flat colour survives quality 100 within a step or two.
int cits_write_jpeg(const char *path, const uint8_t *samples, int width, int height, int components, int quality);

/// Writes a PNG. `color_type` and `bit_depth` are libpng's (e.g. PNG_COLOR_TYPE_RGB = 2, PNG_COLOR_TYPE_GRAY = 0,
/// PNG_COLOR_TYPE_PALETTE = 3, PNG_COLOR_TYPE_RGB_ALPHA = 6); `samples` holds the rows as stored, 16-bit samples
/// big-endian. `palette` holds `palette_count` RGB triples for a palette image (else NULL, 0).
int cits_write_png(const char *path, const uint8_t *samples, int width, int height, int color_type, int bit_depth,
                   const uint8_t *palette, int palette_count);

#endif
