import CImageTestSupport
import Foundation
import Testing
@testable import BNN

/// Writes the small JPEG and PNG files of the image-folder tests (through Tests/CImageTestSupport).
enum ImageFiles {
    static func jpeg(_ url: URL, _ samples: [UInt8], width: Int, height: Int, components: Int = 3, quality: Int = 100) throws {
        precondition(samples.count == width * height * components)
        guard cits_write_jpeg(url.path, samples, Int32(width), Int32(height), Int32(components), Int32(quality)) == 0 else {
            throw ImageFolderError.invalidArgument("could not write \(url.path)")
        }
    }

    /// libpng's colour types.
    static let gray: Int32 = 0, rgb: Int32 = 2, palette: Int32 = 3, grayAlpha: Int32 = 4, rgba: Int32 = 6

    static func png(_ url: URL, _ samples: [UInt8], width: Int, height: Int, colorType: Int32 = rgb, bitDepth: Int32 = 8,
                    palette: [UInt8] = []) throws {
        let written = palette.withUnsafeBufferPointer { table in
            cits_write_png(url.path, samples, Int32(width), Int32(height), colorType, bitDepth, table.baseAddress,
                           Int32(palette.count / 3))
        }
        guard written == 0 else { throw ImageFolderError.invalidArgument("could not write \(url.path)") }
    }

    /// A flat RGB image.
    static func flat(_ color: [UInt8], width: Int, height: Int) -> [UInt8] {
        Array((0..<(width * height)).flatMap { _ in color })
    }

    /// Deterministic textured RGB pixels (so crops and flips show).
    static func pattern(width: Int, height: Int, seed: Int) -> [UInt8] {
        (0..<(width * height * 3)).map { UInt8(truncatingIfNeeded: ($0 &* 37 &+ seed &* 101 &+ ($0 / (width * 3)) &* 13) % 251) }
    }

    /// The `columns` × `rows` part of RGB pixels `width` wide.
    static func region(_ pixels: [UInt8], width: Int, columns: Range<Int>, rows: Range<Int>) -> [UInt8] {
        var result: [UInt8] = []
        for y in rows {
            for x in columns {
                let base: Int = (y * width + x) * 3
                result.append(contentsOf: pixels[base..<(base + 3)])
            }
        }
        return result
    }

    /// DIR/train/<class>/<n>.png and DIR/val/<class>/<n>.png, `perClass` images of `side`×`side` per class.
    static func tree(_ directory: URL, classes: [String], perClass: Int, side: Int, jpeg: Bool = false) throws {
        for split in ["train", "val"] {
            for (label, name) in classes.enumerated() {
                let folder = directory.appendingPathComponent(split).appendingPathComponent(name)
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                for n in 0..<perClass {
                    let pixels = pattern(width: side, height: side, seed: label * 31 + n + (split == "val" ? 7 : 0))
                    if jpeg {
                        try ImageFiles.jpeg(folder.appendingPathComponent("\(n).jpg"), pixels, width: side, height: side, quality: 95)
                    } else {
                        try ImageFiles.png(folder.appendingPathComponent("\(n).png"), pixels, width: side, height: side)
                    }
                }
            }
        }
    }
}

/// Collects warnings from concurrent code.
final class WarningLog: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ line: String) { lock.lock(); lines.append(line); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return lines }
}

@Suite("Data: image decoding")
struct DataImageDecodingTests {
    @Test("a PNG's pixels come back exactly; 16-bit samples are rounded to 8 bits; palette, gray and alpha become RGB")
    func pngPixels() throws {
        let directory = try DataFixtures.makeTemporaryDirectory("png")
        defer { try? FileManager.default.removeItem(at: directory) }
        let rgb: [UInt8] = [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30, 200, 150, 100, 1, 2, 3]
        try ImageFiles.png(directory.appendingPathComponent("rgb.png"), rgb, width: 3, height: 2)
        let decoded = try ImageDecoder.decode(file: directory.appendingPathComponent("rgb.png").path)
        #expect(decoded.width == 3 && decoded.height == 2 && decoded.pixels == rgb)

        // 16-bit samples that are multiples of 257 map to exactly value / 257.
        let values: [UInt16] = [0, 257 * 1, 257 * 100, 257 * 200, 65535, 257 * 37]
        let bigEndian = values.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
        try ImageFiles.png(directory.appendingPathComponent("deep.png"), bigEndian, width: 2, height: 1, bitDepth: 16)
        let deep = try ImageDecoder.decode(file: directory.appendingPathComponent("deep.png").path)
        #expect(deep.pixels == values.map { UInt8($0 / 257) })

        try ImageFiles.png(directory.appendingPathComponent("gray.png"), [0, 77, 255], width: 3, height: 1, colorType: ImageFiles.gray)
        let gray = try ImageDecoder.decode(file: directory.appendingPathComponent("gray.png").path)
        #expect(gray.pixels == [0, 0, 0, 77, 77, 77, 255, 255, 255])

        try ImageFiles.png(directory.appendingPathComponent("palette.png"), [1, 0], width: 2, height: 1,
                           colorType: ImageFiles.palette, palette: [9, 8, 7, 250, 128, 3])
        let palette = try ImageDecoder.decode(file: directory.appendingPathComponent("palette.png").path)
        #expect(palette.pixels == [250, 128, 3, 9, 8, 7])

        try ImageFiles.png(directory.appendingPathComponent("rgba.png"), [10, 20, 30, 0, 40, 50, 60, 255], width: 2, height: 1,
                           colorType: ImageFiles.rgba)
        let rgba = try ImageDecoder.decode(file: directory.appendingPathComponent("rgba.png").path)
        #expect(rgba.pixels == [10, 20, 30, 40, 50, 60])

        try ImageFiles.png(directory.appendingPathComponent("one.png"), [5, 6, 7], width: 1, height: 1)
        #expect(try ImageDecoder.decode(file: directory.appendingPathComponent("one.png").path).pixels == [5, 6, 7])
    }

    @Test("JPEGs of a flat colour (quality 100) decode within ±2: RGB, grayscale, CMYK (Adobe, inverted), 1×1")
    func jpegPixels() throws {
        let directory = try DataFixtures.makeTemporaryDirectory("jpeg")
        defer { try? FileManager.default.removeItem(at: directory) }
        func close(_ pixels: [UInt8], _ color: [UInt8]) -> Bool {
            pixels.enumerated().allSatisfy { abs(Int($0.element) - Int(color[$0.offset % 3])) <= 2 }
        }
        let color: [UInt8] = [200, 30, 90]
        try ImageFiles.jpeg(directory.appendingPathComponent("flat.jpg"), ImageFiles.flat(color, width: 16, height: 8),
                            width: 16, height: 8)
        let flat = try ImageDecoder.decode(file: directory.appendingPathComponent("flat.jpg").path)
        #expect(flat.width == 16 && flat.height == 8 && close(flat.pixels, color))

        try ImageFiles.jpeg(directory.appendingPathComponent("gray.jpg"), [UInt8](repeating: 77, count: 64),
                            width: 8, height: 8, components: 1)
        let gray = try ImageDecoder.decode(file: directory.appendingPathComponent("gray.jpg").path)
        #expect(gray.pixels.count == 8 * 8 * 3 && close(gray.pixels, [77, 77, 77]))

        // Stored (inverted) CMYK 200, 100, 50, 128: R = 200·128/255 ≈ 100, G ≈ 50, B ≈ 25.
        try ImageFiles.jpeg(directory.appendingPathComponent("cmyk.jpg"),
                            Array((0..<64).flatMap { _ in [UInt8(200), 100, 50, 128] }), width: 8, height: 8, components: 4)
        let cmyk = try ImageDecoder.decode(file: directory.appendingPathComponent("cmyk.jpg").path)
        #expect(cmyk.pixels.count == 8 * 8 * 3 && close(cmyk.pixels, [100, 50, 25]))

        try ImageFiles.jpeg(directory.appendingPathComponent("one.jpg"), [40, 120, 220], width: 1, height: 1)
        let one = try ImageDecoder.decode(file: directory.appendingPathComponent("one.jpg").path)
        #expect(one.width == 1 && one.height == 1 && close(one.pixels, [40, 120, 220]))
    }

    @Test("DCT-domain scaling decodes at ⌈size · s / 8⌉; the scale is the smallest that covers the target")
    func reducedDecoding() throws {
        let directory = try DataFixtures.makeTemporaryDirectory("scale")
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("big.jpg")
        try ImageFiles.jpeg(url, ImageFiles.flat([90, 180, 40], width: 100, height: 60), width: 100, height: 60)
        let bytes = try ImageDecoder.read(url.path)
        for (s, width, height) in [(8, 100, 60), (4, 50, 30), (3, 38, 23), (1, 13, 8)] {
            let image = try ImageDecoder.decode(bytes, path: url.path, scaleEighths: s)
            #expect(image.width == width && image.height == height, "scale \(s)/8")
            let near = image.pixels.enumerated().allSatisfy { (offset, value) in
                abs(Int(value) - [90, 180, 40][offset % 3]) <= 3
            }
            #expect(near, "scale \(s)/8")
        }
        #expect(ImageDecoder.scaleEighths(regionWidth: 500, regionHeight: 375, targetWidth: 224, targetHeight: 224) == 5)
        #expect(ImageDecoder.scaleEighths(regionWidth: 2000, regionHeight: 1800, targetWidth: 224, targetHeight: 224) == 1)
        #expect(ImageDecoder.scaleEighths(regionWidth: 100, regionHeight: 100, targetWidth: 224, targetHeight: 224) == 8)
        #expect(ImageDecoder.scaleEighths(regionWidth: 448, regionHeight: 448, targetWidth: 224, targetHeight: 224) == 4)
    }

    @Test("bad files are errors naming the file: empty, text named .jpg, truncated JPEG and PNG, garbage after the signature")
    func badFiles() throws {
        let directory = try DataFixtures.makeTemporaryDirectory("bad")
        defer { try? FileManager.default.removeItem(at: directory) }
        let good = directory.appendingPathComponent("good.jpg")
        try ImageFiles.jpeg(good, ImageFiles.pattern(width: 64, height: 48, seed: 3), width: 64, height: 48, quality: 90)
        let jpegBytes = try Data(contentsOf: good)
        let goodPNG = directory.appendingPathComponent("good.png")
        try ImageFiles.png(goodPNG, ImageFiles.pattern(width: 64, height: 48, seed: 4), width: 64, height: 48)
        let pngBytes = try Data(contentsOf: goodPNG)

        var cases: [(String, Data, String)] = [
            ("empty.jpg", Data(), "empty"),
            ("text.jpg", Data("this is not an image\n".utf8), "not a JPEG or PNG image"),
            ("half.jpg", jpegBytes.prefix(jpegBytes.count / 2), "corrupt JPEG"),
            ("header.jpg", jpegBytes.prefix(20), "corrupt JPEG"),
            ("signature.jpg", jpegBytes.prefix(3), "corrupt JPEG"),
            ("half.png", pngBytes.prefix(pngBytes.count / 2), "corrupt PNG"),
            ("noend.png", pngBytes.prefix(pngBytes.count - 6), "corrupt PNG"),
            ("signature.png", pngBytes.prefix(8), "corrupt PNG"),
        ]
        var garbage = jpegBytes.prefix(4)
        garbage.append(Data(repeating: 0x5A, count: 200))
        cases.append(("garbage.jpg", garbage, "corrupt JPEG"))
        for (name, bytes, expected) in cases {
            let url = directory.appendingPathComponent(name)
            try bytes.write(to: url)
            do {
                _ = try ImageDecoder.decode(file: url.path)
                Issue.record("\(name) decoded")
            } catch {
                #expect(error.description.contains(url.path) && error.description.contains(expected), "\(name): \(error)")
            }
        }
        // Every truncation and hundreds of corrupted bytes: an image or an error, never a crash.
        for (name, bytes) in [("cut.jpg", jpegBytes), ("cut.png", pngBytes)] {
            let url = directory.appendingPathComponent(name)
            for length in stride(from: 0, to: bytes.count, by: 5) {
                try bytes.prefix(length).write(to: url)
                #expect(throws: ImageFolderError.self, "\(name) cut at \(length)") { try ImageDecoder.decode(file: url.path) }
            }
            var generator = Xoshiro256StarStar(seed: 17)
            for _ in 0..<300 {
                var corrupted = [UInt8](bytes)
                for _ in 0..<(1 + Int(generator.next(below: 4))) {
                    corrupted[Int(generator.next(below: UInt64(corrupted.count)))] = UInt8(truncatingIfNeeded: generator.next())
                }
                try Data(corrupted).write(to: url)
                do {
                    let image = try ImageDecoder.decode(file: url.path)
                    #expect(image.pixels.count == image.width * image.height * 3)
                } catch {
                    #expect(error.description.contains(url.path))
                }
            }
        }
        // A directory and a missing file are refused naming the path.
        for path in [directory.path, directory.appendingPathComponent("missing.jpg").path] {
            #expect(throws: ImageFolderError.self) { try ImageDecoder.decode(file: path) }
        }
    }
}

@Suite("Data: image transforms")
struct DataImageTransformTests {
    @Test("RandomResizedCrop: inside the image, area and ratio within bounds, deterministic for a seed")
    func randomResizedCropGeometry() {
        var fallbacks = 0
        for (width, height) in [(500, 375), (375, 500), (224, 224), (1000, 40), (40, 1000), (1, 1), (3, 2), (4000, 3000)] {
            for seed in UInt64(0)..<300 {
                var generator = Xoshiro256StarStar(seed: seed)
                let crop = RandomResizedCrop.region(width: width, height: height, using: &generator)
                var again = Xoshiro256StarStar(seed: seed)
                #expect(RandomResizedCrop.region(width: width, height: height, using: &again) == crop)
                #expect(crop.top >= 0 && crop.left >= 0 && crop.width >= 1 && crop.height >= 1)
                #expect(crop.top + crop.height <= height && crop.left + crop.width <= width)
                if crop == RandomResizedCrop.fallback(width: width, height: height) {
                    fallbacks += 1
                    continue
                }
                // w = round(√(A·r)), h = round(√(A/r)) for A in [0.08, 1]·area and r in [3/4, 4/3]: each within 0.5.
                let w = Double(crop.width), h = Double(crop.height)
                let area = Double(width * height)
                #expect((w - 0.5) * (h - 0.5) <= area && (w + 0.5) * (h + 0.5) >= 0.08 * area, "\(crop) of \(width)×\(height)")
                #expect((w - 0.5) / (h + 0.5) <= 4.0 / 3 && (w + 0.5) / (h - 0.5) >= 3.0 / 4, "\(crop) of \(width)×\(height)")
            }
        }
        #expect(fallbacks > 0)
        // A strip too thin for any attempt: the centre crop of ratio 4/3 (torchvision's fallback).
        #expect(RandomResizedCrop.fallback(width: 1000, height: 10) == CropRegion(top: 0, left: 493, height: 10, width: 13))
        #expect(RandomResizedCrop.fallback(width: 10, height: 1000) == CropRegion(top: 493, left: 0, height: 13, width: 10))
        #expect(RandomResizedCrop.fallback(width: 500, height: 375) == CropRegion(top: 0, left: 0, height: 375, width: 500))
        var generator = Xoshiro256StarStar(seed: 1)
        #expect(RandomResizedCrop.region(width: 100_000, height: 2, using: &generator)
            == CropRegion(top: 0, left: 49_998, height: 2, width: 3))
        // Different seeds give different crops.
        let crops = Set((UInt64(0)..<50).map { seed -> CropRegion in
            var generator = Xoshiro256StarStar(seed: seed)
            return RandomResizedCrop.region(width: 500, height: 375, using: &generator)
        })
        #expect(crops.count > 40)
    }

    @Test("Resize(256) + CenterCrop(224): sizes and offsets as torchvision's (half to even)")
    func evaluationGeometry() {
        #expect(ResizeCenterCrop.resized(width: 500, height: 375, shorter: 256) == (341, 256))
        #expect(ResizeCenterCrop.resized(width: 375, height: 500, shorter: 256) == (256, 341))
        #expect(ResizeCenterCrop.resized(width: 300, height: 300, shorter: 256) == (256, 256))
        #expect(ResizeCenterCrop.resized(width: 1, height: 3, shorter: 256) == (256, 768))
        #expect(ResizeCenterCrop.centre(width: 341, height: 256, size: 224) == CropRegion(top: 16, left: 58, height: 224, width: 224))
        #expect(ResizeCenterCrop.centre(width: 343, height: 256, size: 224) == CropRegion(top: 16, left: 60, height: 224, width: 224))
        #expect(ImageFolderTransform.defaultResize(for: 224) == 256)
        #expect(ImageFolderTransform.defaultResize(for: 112) == 128)
    }

    @Test("bilinear resampling: identity at the same size, Pillow's triangle filter when shrinking, flat stays flat")
    func bilinear() throws {
        let pattern = ImageFiles.pattern(width: 7, height: 5, seed: 9)
        let image = try #require(RGBImage(width: 7, height: 5, pixels: pattern))
        #expect(BilinearResize.resample(image, box: (0, 0, 7, 5), outputWidth: 7, outputHeight: 5,
                                        columns: 0..<7, rows: 0..<5) == pattern)
        // A crop at the same size is the crop itself.
        let cropped = BilinearResize.resample(image, box: (2, 1, 5, 4), outputWidth: 3, outputHeight: 3, columns: 0..<3, rows: 0..<3)
        let expected = ImageFiles.region(pattern, width: 7, columns: 2..<5, rows: 1..<4)
        #expect(cropped == expected)
        // 4 → 2 in x: support 2, weights (3, 3, 1)/7 and (1, 3, 3)/7 on the row 0, 100, 200, 255.
        let row = try #require(RGBImage(width: 4, height: 1, pixels: [0, 100, 200, 255].flatMap { [UInt8($0), UInt8($0), UInt8($0)] }))
        #expect(BilinearResize.resample(row, box: (0, 0, 4, 1), outputWidth: 2, outputHeight: 1, columns: 0..<2, rows: 0..<1)
            == [71, 71, 71, 209, 209, 209])
        // Upscaling 2 → 4: weights (1), (3/4, 1/4), (1/4, 3/4), (1) on 0, 200.
        let pair = try #require(RGBImage(width: 2, height: 1, pixels: [0, 0, 0, 200, 200, 200]))
        #expect(BilinearResize.resample(pair, box: (0, 0, 2, 1), outputWidth: 4, outputHeight: 1, columns: 0..<4, rows: 0..<1)
            == [0, 0, 0, 50, 50, 50, 150, 150, 150, 200, 200, 200])
        let flat = try #require(RGBImage(width: 50, height: 30, pixels: ImageFiles.flat([13, 200, 77], width: 50, height: 30)))
        #expect(BilinearResize.resample(flat, box: (3.5, 2.25, 47.75, 29), outputWidth: 9, outputHeight: 11,
                                        columns: 0..<9, rows: 0..<11) == ImageFiles.flat([13, 200, 77], width: 9, height: 11))
        // A part of the output equals that part of the whole output.
        let big = try #require(RGBImage(width: 40, height: 30, pixels: ImageFiles.pattern(width: 40, height: 30, seed: 2)))
        let whole = BilinearResize.resample(big, box: (0, 0, 40, 30), outputWidth: 17, outputHeight: 13, columns: 0..<17, rows: 0..<13)
        let part = BilinearResize.resample(big, box: (0, 0, 40, 30), outputWidth: 17, outputHeight: 13, columns: 4..<10, rows: 3..<12)
        let wholePart = ImageFiles.region(whole, width: 17, columns: 4..<10, rows: 3..<12)
        #expect(part == wholePart)
    }
}

@Suite("Data: image folders")
struct DataImageFolderTests {
    @Test("classes sorted by code point, hidden entries ignored, files in sorted os.walk order, labels by class")
    func classOrdering() throws {
        let directory = try DataFixtures.makeTemporaryDirectory("order")
        defer { try? FileManager.default.removeItem(at: directory) }
        let split = directory.appendingPathComponent("train")
        let names = ["b", "B", "a", "_x", "10", "9", "é"]
        let pixel = ImageFiles.pattern(width: 4, height: 4, seed: 1)
        for name in names + [".hidden"] {
            let folder = split.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: folder.appendingPathComponent("sub"), withIntermediateDirectories: true)
            for file in ["c.png", "a.png", "sub/z.png", ".DS_Store"] {
                try ImageFiles.png(folder.appendingPathComponent(file), pixel, width: 4, height: 4)
            }
        }
        try Data("loose file".utf8).write(to: split.appendingPathComponent("notes.txt"))
        let data = try ImageFolderSplit(directory: split)
        #expect(data.classNames == ["10", "9", "B", "_x", "a", "b", "é"])
        #expect(data.count == 21 && data.labelHistogram == [3, 3, 3, 3, 3, 3, 3])
        #expect(data.labels == (0..<7).flatMap { label in [Int32](repeating: Int32(label), count: 3) })
        let relative = data.files.prefix(3).map { String($0.dropFirst(split.path.count + 1)) }
        #expect(relative == ["10/a.png", "10/c.png", "10/sub/z.png"])
        #expect(data.transform == .imagenetDefault && data.imageShape == [224, 224, 3])
    }

    @Test("layout errors name the directory: missing, no class, empty class, different classes in train and val")
    func layoutErrors() throws {
        let directory = try DataFixtures.makeTemporaryDirectory("layout")
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(throws: ImageFolderError.missingDirectory(path: directory.appendingPathComponent("train").path)) {
            try ImageFolder(directory: directory)
        }
        let train = directory.appendingPathComponent("train")
        try FileManager.default.createDirectory(at: train, withIntermediateDirectories: true)
        #expect(throws: ImageFolderError.noClasses(directory: train.path)) { try ImageFolderSplit(directory: train) }
        try FileManager.default.createDirectory(at: train.appendingPathComponent("cat"), withIntermediateDirectories: true)
        #expect(throws: ImageFolderError.emptyClass(directory: train.appendingPathComponent("cat").path)) {
            try ImageFolderSplit(directory: train)
        }
        try FileManager.default.removeItem(at: directory)
        try ImageFiles.tree(directory, classes: ["cat", "dog"], perClass: 1, side: 8)
        try FileManager.default.moveItem(at: directory.appendingPathComponent("val/dog"), to: directory.appendingPathComponent("val/cow"))
        do {
            _ = try ImageFolder(directory: directory)
            Issue.record("different classes accepted")
        } catch {
            #expect(error.description.contains("only in train: dog") && error.description.contains("only in val: cow"))
        }
    }

    @Test("a folder of 32×32 images gets the CIFAR-10 transforms: the same batches as the binary reader on the same pixels")
    func cifarFolderMatchesBinary() throws {
        let directory = try DataFixtures.makeTemporaryDirectory("cifar-folder")
        defer { try? FileManager.default.removeItem(at: directory) }
        let classes = ["c0", "c1", "c2"]
        try ImageFiles.tree(directory, classes: classes, perClass: 4, side: 32)
        let folder = try ImageFolder(directory: directory, options: ImageFolderOptions(threads: 2))
        #expect(folder.train.transform == .cifar && folder.train.imageShape == [32, 32, 3])
        // The binary split with the same images in the same order (channel planes).
        var images: [UInt8] = [], labels: [UInt8] = []
        for (index, path) in folder.train.files.enumerated() {
            let image = try ImageDecoder.decode(file: path)
            for channel in 0..<3 { for p in 0..<1024 { images.append(image.pixels[p * 3 + channel]) } }
            labels.append(UInt8(folder.train.labels[index]))
        }
        let binary = try #require(CIFAR10Split(images: images, labels: labels))
        for training in [true, false] {
            let a = try folder.train.batchPlan(batchSize: 5, seed: 99, training: training)
            let b = try binary.batchPlan(batchSize: 5, seed: 99, training: training)
            #expect(a.batchesPerEpoch == 3 && b.batchesPerEpoch == 3)
            for epoch in [0, 3] {
                for index in 0..<3 {
                    let x = try a.epochBatches(epoch).batch(at: index), y = try b.epochBatches(epoch).batch(at: index)
                    #expect(x == y, "training \(training) epoch \(epoch) batch \(index)")
                }
            }
        }
    }

    @Test("batches are the same for 1 and 2 decode threads and from a fresh reader (a resume); they change with the epoch")
    func deterministicBatches() throws {
        let directory = try DataFixtures.makeTemporaryDirectory("determinism")
        defer { try? FileManager.default.removeItem(at: directory) }
        let train = directory.appendingPathComponent("train")
        for (label, name) in ["a", "b"].enumerated() {
            let folder = train.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            for n in 0..<5 {
                let (w, h) = [(120, 90), (90, 120), (64, 64), (200, 50), (33, 47)][n]
                try ImageFiles.jpeg(folder.appendingPathComponent("\(n).jpg"),
                                    ImageFiles.pattern(width: w, height: h, seed: label * 10 + n), width: w, height: h, quality: 90)
            }
        }
        let transform = ImageFolderTransform.imagenet(size: 24, resize: 28)
        func batches(threads: Int, training: Bool, epoch: Int) throws -> [ImageBatch] {
            let split = try ImageFolderSplit(directory: train, options: ImageFolderOptions(transform: transform, threads: threads))
            let epochBatches = try split.batchPlan(batchSize: 4, seed: 5, training: training).epochBatches(epoch)
            return try (0..<epochBatches.count).map { try epochBatches.batch(at: $0) }
        }
        for training in [true, false] {
            let one = try batches(threads: 1, training: training, epoch: 2)
            #expect(one.map(\.count) == [4, 4, 2])
            #expect(one.allSatisfy { $0.height == 24 && $0.width == 24 && $0.channels == 3 })
            #expect(try batches(threads: 2, training: training, epoch: 2) == one)
            #expect(try batches(threads: 2, training: training, epoch: 2) == one)
            // Another epoch: new draws and order in training, the same batches in evaluation.
            let otherEpoch = try batches(threads: 1, training: training, epoch: 3)
            #expect((otherEpoch == one) == !training)
        }
        // A training image is its own crop of the file: the same as transforming that file alone.
        let split = try ImageFolderSplit(directory: train, options: ImageFolderOptions(transform: transform, threads: 2))
        let batch = try split.batchPlan(batchSize: 4, seed: 5, training: true).epochBatches(1).batch(at: 1)
        let alone = try split.transformed(record: batch.indices[2], seed: 5, epoch: 1, position: 6, training: true)
        #expect(Array(batch.images[(2 * 24 * 24 * 3)..<(3 * 24 * 24 * 3)]) == alone)
        // With reduced decoding off every file is decoded at full size; evaluation keeps the files' order.
        var full = split.options
        full.reducedDecoding = false
        let fullSplit = try ImageFolderSplit(directory: train, options: full)
        let evaluation = try fullSplit.batchPlan(batchSize: 10, seed: 0, training: false).epochBatches(0).batch(at: 0)
        #expect(evaluation.count == 10 && evaluation.labels == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    }

    @Test("bad files: an error naming the file, or skipped with one warning per file under skipBadImages")
    func badFilesInFolder() throws {
        let directory = try DataFixtures.makeTemporaryDirectory("bad-folder")
        defer { try? FileManager.default.removeItem(at: directory) }
        try ImageFiles.tree(directory, classes: ["a", "b"], perClass: 3, side: 40, jpeg: true)
        let good = try Data(contentsOf: directory.appendingPathComponent("train/a/0.jpg"))
        let truncated = directory.appendingPathComponent("train/a/1.jpg")
        try good.prefix(good.count / 3).write(to: truncated)
        let text = directory.appendingPathComponent("train/b/readme.jpg")
        try Data("not an image".utf8).write(to: text)
        let empty = directory.appendingPathComponent("train/b/zero.png")
        try Data().write(to: empty)

        let strict = try ImageFolder(directory: directory, options: ImageFolderOptions(transform: .imagenet(size: 16, resize: 20)))
        #expect(strict.train.count == 8)
        let plan = try strict.train.batchPlan(batchSize: 8, seed: 1, training: true)
        do {
            _ = try plan.epochBatches(0).batch(at: 0)
            Issue.record("a batch with bad files was built")
        } catch let error as ImageFolderError {
            let paths = [truncated.path, text.path, empty.path]
            #expect(paths.contains { error.description.contains($0) }, "\(error)")
        }

        let log = WarningLog()
        let options = ImageFolderOptions(transform: .imagenet(size: 16, resize: 20), threads: 2, skipBadImages: true,
                                         warn: { log.append($0) })
        let lenient = try ImageFolder(directory: directory, options: options)
        let lenientPlan = try lenient.train.batchPlan(batchSize: 8, seed: 1, training: true)
        for epoch in 0..<3 {
            let batch = try lenientPlan.epochBatches(epoch).batch(at: 0)
            #expect(batch.count == 5)
            #expect(Set(batch.indices.map { lenient.train.files[$0] }).isDisjoint(with: [truncated.path, text.path, empty.path]))
        }
        let warnings = log.all
        #expect(warnings.count == 3)
        for path in [truncated.path, text.path, empty.path] {
            #expect(warnings.filter { $0.contains(path) }.count == 1, "\(warnings)")
        }
        // Evaluation on the clean val/ split is unaffected.
        let validation = try lenient.validation.batchPlan(batchSize: 16, seed: 0, training: false).epochBatches(0).batch(at: 0)
        #expect(validation.count == 6 && validation.labels == [0, 0, 0, 1, 1, 1])
    }

    @Test("the trainer trains and evaluates from a folder of 32×32 images, and resuming gives the same run")
    func trainerOnFolder() throws {
        let directory = try DataFixtures.makeTemporaryDirectory("folder-train")
        defer { try? FileManager.default.removeItem(at: directory) }
        try ImageFiles.tree(directory.appendingPathComponent("data"), classes: ["x", "y", "z"], perClass: 4, side: 32, jpeg: true)
        let folder = try ImageFolder(directory: directory.appendingPathComponent("data"), options: ImageFolderOptions(threads: 2))
        var configuration = TrainingConfiguration(epochs: 2)
        configuration.batchSize = 5
        configuration.seed = 3
        func run(_ name: String, stopAfter: Int?) throws -> [EpochRecord] {
            let trainer = try Trainer(configuration: configuration, training: folder.train, validation: folder.validation,
                                      runDirectory: directory.appendingPathComponent(name))
            var steps = 0
            trainer.shouldStop = {
                steps += 1
                return stopAfter == steps
            }
            let outcome = try trainer.run()
            guard stopAfter != nil else {
                #expect(outcome == .finished)
                return trainer.records
            }
            // The first check comes before the first step.
            #expect(outcome == .interrupted(epoch: 1, step: 1))
            trainer.releaseRunDirectory()
            let resumed = try Trainer(configuration: configuration, training: folder.train, validation: folder.validation,
                                      runDirectory: directory.appendingPathComponent(name), resume: true)
            #expect(try resumed.run() == .finished)
            return resumed.records
        }
        let whole = try run("whole", stopAfter: nil)
        #expect(whole.count == 2 && whole.allSatisfy { $0.steps == 3 && $0.images == 12 && $0.validationAccuracy != nil })
        try Kernels.withSettings(threads: 1) {
            let a = try run("a", stopAfter: nil), b = try run("b", stopAfter: 2)
            #expect(a.map(\.trainLoss) == b.map(\.trainLoss) && a.map(\.validationLoss) == b.map(\.validationLoss))
        }
    }
}

@Suite("Synthetic image folders")
struct SyntheticImageFolderTests {
    @Test("a generated folder reads back as an image folder: layout, sizes, JPEGs, the same bytes for the same seed")
    func writesAndReadsBack() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("bnn-synthetic-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let layout = SyntheticImageFolder.Layout(
            classes: 3, trainingImagesPerClass: 2, validationImagesPerClass: 1, width: 50, height: 37, quality: 80)
        #expect(try SyntheticImageFolder.write(layout, to: root, seed: 4) == 9)
        let file = root.appendingPathComponent("train/class02/0001.jpg")
        let bytes = try Data(contentsOf: file)
        #expect(bytes.starts(with: [0xFF, 0xD8, 0xFF]))
        let image = try ImageDecoder.decode(bytes, path: file.path)
        #expect(image.width == 50 && image.height == 37)
        // Written again with the same seed: the same file; with another seed: another one.
        let again = root.appendingPathComponent("again")
        try SyntheticImageFolder.write(layout, to: again, seed: 4)
        #expect(try Data(contentsOf: again.appendingPathComponent("train/class02/0001.jpg")) == bytes)
        let other = root.appendingPathComponent("other")
        try SyntheticImageFolder.write(layout, to: other, seed: 5)
        #expect(try Data(contentsOf: other.appendingPathComponent("train/class02/0001.jpg")) != bytes)
        #expect(throws: ImageFolderError.self) {
            try SyntheticImageFolder.write(SyntheticImageFolder.Layout(quality: 0), to: root)
        }
    }
}
