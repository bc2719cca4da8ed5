import CImage
import Foundation

/// Generated image folders for benchmarks and tests: `DIR/train/classNN/NNNN.jpg` and `DIR/val/classNN/NNNN.jpg`,
/// JPEGs at photo size (500×375 by default, as ImageNet's typical image) written with libjpeg-turbo at quality 90
/// and 4:2:0 chroma subsampling, so that decoding costs what it costs on photographs. Each image is a smooth
/// gradient in a colour that depends on its class, with a few random rectangles and a little noise; the content is a
/// function of (seed, split, class, index) only.
public enum SyntheticImageFolder {
    /// What to generate.
    public struct Layout: Sendable {
        /// Class directories per split.
        public var classes: Int
        /// Images per class in `train/`.
        public var trainingImagesPerClass: Int
        /// Images per class in `val/`.
        public var validationImagesPerClass: Int
        /// Image width and height in pixels.
        public var width: Int, height: Int
        /// JPEG quality, 1...100.
        public var quality: Int

        /// A layout; the defaults give 4 × 32 training and 4 × 8 validation images of 500×375.
        public init(
            classes: Int = 4, trainingImagesPerClass: Int = 32, validationImagesPerClass: Int = 8, width: Int = 500,
            height: Int = 375, quality: Int = 90
        ) {
            self.classes = classes
            self.trainingImagesPerClass = trainingImagesPerClass
            self.validationImagesPerClass = validationImagesPerClass
            self.width = width
            self.height = height
            self.quality = quality
        }
    }

    /// Writes the folder under `directory` (created if needed; existing files of the same names are replaced) and
    /// returns the number of files written. Throws naming the file that could not be written.
    @discardableResult
    public static func write(_ layout: Layout, to directory: URL, seed: UInt64 = 1) throws(ImageFolderError) -> Int {
        for (value, name, range) in [
            (layout.classes, "classes", 1...1000), (layout.trainingImagesPerClass, "training images per class", 1...100_000),
            (layout.validationImagesPerClass, "validation images per class", 1...100_000),
            (layout.width, "width", 1...ImageFolder.maximumSide), (layout.height, "height", 1...ImageFolder.maximumSide),
            (layout.quality, "quality", 1...100),
        ] where !range.contains(value) {
            throw .invalidArgument("synthetic image folder: \(name) must be in \(range.lowerBound)...\(range.upperBound), got \(value)")
        }
        var written = 0
        for (split, perClass) in [("train", layout.trainingImagesPerClass), ("val", layout.validationImagesPerClass)] {
            for label in 0..<layout.classes {
                let classDirectory = directory.appendingPathComponent(split)
                    .appendingPathComponent(String(format: "class%02d", label))
                do {
                    try FileAccess.createDirectory(classDirectory.path)
                } catch {
                    throw .unreadableDirectory(path: classDirectory.path, reason: error.reason)
                }
                for index in 0..<perClass {
                    var generator = Xoshiro256StarStar(
                        seed: seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(split == "train" ? 0 : 1) << 40
                            &+ UInt64(label) << 20 &+ UInt64(index))
                    let pixels = picture(layout.width, layout.height, label: label, generator: &generator)
                    let path = classDirectory.appendingPathComponent(String(format: "%04d.jpg", index)).path
                    let bytes = try encode(pixels, width: layout.width, height: layout.height, quality: layout.quality, path: path)
                    do {
                        try FileAccess.writeAtomically([bytes], to: path)
                    } catch {
                        throw .badImage(path: path, reason: "could not be written: \(error.reason)")
                    }
                    written += 1
                }
            }
        }
        return written
    }

    /// RGB pixels: a gradient in the class's colour, three rectangles, noise of ±8.
    static func picture(_ width: Int, _ height: Int, label: Int, generator: inout Xoshiro256StarStar) -> [UInt8] {
        let base = (0..<3).map { (label * 67 + 40 * $0) % 256 }
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                for c in 0..<3 {
                    let gradient = (x * (c + 1) * 97 / max(width, 1) + y * (3 - c) * 61 / max(height, 1)) % 256
                    pixels[(y * width + x) * 3 + c] = UInt8((base[c] + gradient) / 2)
                }
            }
        }
        for _ in 0..<3 {
            let x0 = Int(generator.next(below: UInt64(width))), y0 = Int(generator.next(below: UInt64(height)))
            let x1 = min(width, x0 + 1 + Int(generator.next(below: UInt64(max(width / 3, 1)))))
            let y1 = min(height, y0 + 1 + Int(generator.next(below: UInt64(max(height / 3, 1)))))
            let colour = (0..<3).map { _ in UInt8(generator.next(below: 256)) }
            for y in y0..<y1 {
                for x in x0..<x1 {
                    for c in 0..<3 { pixels[(y * width + x) * 3 + c] = colour[c] }
                }
            }
        }
        for index in pixels.indices {
            let noise = Int(generator.next(below: 17)) - 8
            pixels[index] = UInt8(clamping: Int(pixels[index]) + noise)
        }
        return pixels
    }

    /// The JPEG bytes of `pixels`.
    static func encode(_ pixels: [UInt8], width: Int, height: Int, quality: Int, path: String) throws(ImageFolderError) -> [UInt8] {
        var bytes: UnsafeMutablePointer<UInt8>?
        var size = 0
        var message = [CChar](repeating: 0, count: 200)
        let status = pixels.withUnsafeBufferPointer { rgb in
            cimage_encode_jpeg(rgb.baseAddress, Int32(width), Int32(height), Int32(quality), &bytes, &size, &message)
        }
        defer { cimage_free(bytes) }
        guard status == Int32(CIMAGE_OK.rawValue), let bytes else {
            let text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw .badImage(path: path, reason: "could not be encoded: \(text)")
        }
        return Array(UnsafeBufferPointer(start: bytes, count: size))
    }
}
