// Decoding of JPEG (libjpeg-turbo) and PNG (libpng) files held in memory to 8-bit RGB, for the image-folder
// data source. Every failure is returned as a status and a message; nothing here aborts or exits the process.
#ifndef CIMAGE_H
#define CIMAGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Outcome of `cimage_probe` and `cimage_decode`.
typedef enum {
    CIMAGE_OK = 0,
    /// Neither a JPEG nor a PNG signature at the start of the bytes (this includes an empty file).
    CIMAGE_NOT_AN_IMAGE = 1,
    /// A JPEG or PNG signature, but the data is corrupt or truncated; the message says what the decoder found.
    CIMAGE_CORRUPT = 2,
    /// Width × height above `CIMAGE_MAX_PIXELS`, or a zero dimension.
    CIMAGE_BAD_SIZE = 3,
    /// An allocation failed.
    CIMAGE_NO_MEMORY = 4,
    /// A null pointer or a scale outside 1...8.
    CIMAGE_BAD_ARGUMENT = 5,
} cimage_status;

/// The container recognised from the first bytes.
typedef enum {
    CIMAGE_FORMAT_UNKNOWN = 0,
    CIMAGE_FORMAT_JPEG = 1,
    CIMAGE_FORMAT_PNG = 2,
} cimage_format;

/// The largest image accepted, in pixels of the file (2^27, about 400 MB as RGB): a larger one is refused before
/// anything of its size is allocated.
#define CIMAGE_MAX_PIXELS ((uint64_t)1 << 27)

/// Result of a probe or a decode. `pixels` (decode only) holds `width * height * 3` bytes, rows top to bottom,
/// R, G, B per pixel, and must be released with `cimage_free`; it is NULL unless the status is CIMAGE_OK.
typedef struct {
    int status;
    int format;
    /// The image's size as stored in the file.
    int source_width, source_height;
    /// The size of `pixels`: the source size, or for a JPEG decoded at scale s/8, ceil(source · s / 8).
    int width, height;
    uint8_t *pixels;
    /// Empty on success; otherwise one line saying what is wrong (no file name: the caller knows it).
    char message[200];
} cimage_result;

/// Reads only the header: fills status, format, source_width and source_height (and width/height equal to them).
int cimage_probe(const uint8_t *data, size_t size, cimage_result *result);

/// Decodes to 8-bit RGB. Grayscale is replicated to three channels, CMYK and YCCK JPEGs are converted
/// (R = (255 − C)(255 − K) / 255, with Adobe's inverted storage taken into account), PNG palettes are expanded,
/// 16-bit PNG samples are scaled to 8 bits (rounded) and alpha is dropped (not composited).
/// `scale_eighths` in 1...8 asks a JPEG to be decoded at scale_eighths/8 by libjpeg-turbo's DCT-domain scaling
/// (8: full size); a PNG is always decoded at full size. A truncated JPEG is an error, not a grey-filled image.
int cimage_decode(const uint8_t *data, size_t size, int scale_eighths, cimage_result *result);

/// Releases `pixels` of a decode, or the bytes of an encode (NULL is allowed).
void cimage_free(uint8_t *pixels);

/// Encodes `width × height` RGB pixels (rows top to bottom) as a baseline JPEG of `quality` 1...100 with libjpeg's
/// default 4:2:0 chroma subsampling, as cameras and photo collections store them (for generated benchmark data).
/// On success `*bytes` holds `*size` bytes to release with `cimage_free`; on failure the status says why and
/// `message` (200 bytes, may be NULL) one line of what the encoder said.
int cimage_encode_jpeg(const uint8_t *rgb, int width, int height, int quality, uint8_t **bytes, size_t *size,
                       char *message);

#ifdef __cplusplus
}
#endif

#endif
