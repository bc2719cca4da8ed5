import CImage
import Foundation

/// 8-bit RGB pixels, rows top to bottom, R, G, B per pixel.
public struct RGBImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// `width · height · 3` bytes.
    public let pixels: [UInt8]

    /// Wraps pixels; nil unless `pixels.count == width · height · 3` with both sizes ≥ 1.
    public init?(width: Int, height: Int, pixels: [UInt8]) {
        guard width >= 1, height >= 1, width.multipliedReportingOverflow(by: height).overflow == false,
              pixels.count == width * height * 3 else { return nil }
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    init(validatedWidth width: Int, height: Int, pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.pixels = pixels
    }
}

/// JPEG and PNG files to RGB, through the C target `CImage` (libjpeg-turbo and libpng). The format is recognised
/// from the file's first bytes, whatever its name.
public enum ImageDecoder {
    /// The largest image file read, 256 MiB: a larger one is refused before it is read.
    public static let maximumFileBytes = 256 << 20

    /// The container and stored size of an image.
    public struct Header: Sendable, Equatable {
        public enum Format: String, Sendable { case jpeg = "JPEG", png = "PNG" }
        public var format: Format
        public var width: Int
        public var height: Int
    }

    /// Reads a regular file of at most `maximumFileBytes`.
    public static func read(_ path: String) throws(ImageFolderError) -> Data {
        do {
            return try FileAccess.readRegularFile(path, limit: maximumFileBytes)
        } catch {
            throw .badImage(path: path, reason: error.reason)
        }
    }

    /// The format and stored size, from the header alone.
    public static func header(of bytes: Data, path: String) throws(ImageFolderError) -> Header {
        var result = cimage_result()
        bytes.withUnsafeBytes { raw in
            _ = cimage_probe(raw.bindMemory(to: UInt8.self).baseAddress, raw.count, &result)
        }
        try check(&result, path: path)
        return Header(format: result.format == CIMAGE_FORMAT_JPEG.rawValue ? .jpeg : .png,
                      width: Int(result.source_width), height: Int(result.source_height))
    }

    /// Decodes to RGB; a JPEG at `scaleEighths`/8 of its size (1...8, DCT-domain scaling; the size is then
    /// ⌈stored · scale⌉), a PNG always at full size.
    public static func decode(_ bytes: Data, path: String, scaleEighths: Int = 8) throws(ImageFolderError) -> RGBImage {
        var result = cimage_result()
        bytes.withUnsafeBytes { raw in
            _ = cimage_decode(raw.bindMemory(to: UInt8.self).baseAddress, raw.count, Int32(clamping: scaleEighths), &result)
        }
        try check(&result, path: path)
        defer { cimage_free(result.pixels) }
        let width = Int(result.width), height = Int(result.height)
        let pixels = [UInt8](UnsafeBufferPointer(start: result.pixels, count: width * height * 3))
        return RGBImage(validatedWidth: width, height: height, pixels: pixels)
    }

    /// Reads and decodes a file at full size.
    public static func decode(file path: String) throws(ImageFolderError) -> RGBImage {
        try decode(read(path), path: path)
    }

    /// The smallest JPEG scale s/8 (s in 1...8) at which a region of `regionWidth` × `regionHeight` stored pixels
    /// still covers `targetWidth` × `targetHeight` pixels, so that resampling it to the target only ever shrinks;
    /// 8 (full size) when even that is not enough.
    public static func scaleEighths(regionWidth: Double, regionHeight: Double, targetWidth: Int, targetHeight: Int) -> Int {
        for s in 1...8 where regionWidth * Double(s) >= 8 * Double(targetWidth)
            && regionHeight * Double(s) >= 8 * Double(targetHeight) {
            return s
        }
        return 8
    }

    private static func check(_ result: inout cimage_result, path: String) throws(ImageFolderError) {
        guard result.status != CIMAGE_OK.rawValue else { return }
        let message = withUnsafeBytes(of: &result.message) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        throw .badImage(path: path, reason: message)
    }
}
