import Foundation
import Testing
@testable import BNN

extension DataFixtures {
    /// A synthetic 3×32×32 image (CHW bytes) whose every pixel differs from its neighbours and is never 0,
    /// so a padded position cannot be mistaken for an image one.
    static func syntheticImage(seed: Int = 0) -> [UInt8] {
        var image = [UInt8](repeating: 0, count: 3072)
        for c in 0..<3 {
            for y in 0..<32 {
                for x in 0..<32 {
                    image[c * 1024 + y * 32 + x] = UInt8(1 + (seed + c * 85 + y * 32 + x * 3) % 255)
                }
            }
        }
        return image
    }

    /// The naive transform: build the 40×40 zero-padded image, cut the crop, mirror it, normalise each value
    /// with the float32 steps of ToTensor + Normalize. Output HWC.
    static func referenceTransform(_ image: [UInt8], offsetY: Int, offsetX: Int, flip: Bool) -> [Float] {
        var padded = [[[UInt8]]](repeating: [[UInt8]](repeating: [UInt8](repeating: 0, count: 40), count: 40), count: 3)
        for c in 0..<3 {
            for y in 0..<32 {
                for x in 0..<32 { padded[c][y + 4][x + 4] = image[c * 1024 + y * 32 + x] }
            }
        }
        let mean: [Float] = [0.485, 0.456, 0.406]
        let std: [Float] = [0.229, 0.224, 0.225]
        var output = [Float](repeating: .nan, count: 3072)
        for y in 0..<32 {
            var row = (0..<32).map { x in (0..<3).map { c in padded[c][offsetY + y][offsetX + x] } }
            if flip { row.reverse() }
            for x in 0..<32 {
                for c in 0..<3 {
                    let scaled = Float(row[x][c]) / Float(255)
                    output[(y * 32 + x) * 3 + c] = (scaled - mean[c]) / std[c]
                }
            }
        }
        return output
    }

    static func transform(_ image: [UInt8], _ draw: CIFAR10Transform.Draw) -> [Float] {
        var output = [Float](repeating: .nan, count: 3072)
        image.withUnsafeBufferPointer { source in
            CIFAR10Transform.normalisationTable.withUnsafeBufferPointer { table in
                output.withUnsafeMutableBufferPointer { CIFAR10Transform.apply(draw, image: source, table: table, into: $0) }
            }
        }
        return output
    }

    /// nil when the arrays hold the same bits, else a short note on the first difference (a failure then
    /// prints one line instead of thousands of floats).
    static func firstDifference(_ a: [Float], _ b: [Float]) -> String? {
        if a.count != b.count { return "counts differ: \(a.count) vs \(b.count)" }
        guard let i = a.indices.first(where: { a[$0].bitPattern != b[$0].bitPattern }) else { return nil }
        return "element \(i): \(a[i]) vs \(b[i])"
    }

    /// nil when two batches are identical, else what differs first.
    static func batchDifference(_ a: ImageBatch, _ b: ImageBatch) -> String? {
        if a.indices != b.indices { return "indices differ: \(a.indices.prefix(8))... vs \(b.indices.prefix(8))..." }
        if a.labels != b.labels { return "labels differ" }
        if (a.height, a.width, a.channels) != (b.height, b.width, b.channels) { return "shapes differ" }
        return DataFixtures.firstDifference(a.images, b.images).map { "images: \($0)" }
    }

    /// A split of `count` synthetic images with labels i mod 10.
    static func syntheticSplit(count: Int) -> CIFAR10Split {
        var images: [UInt8] = []
        for i in 0..<count { images += DataFixtures.syntheticImage(seed: i * 11) }
        return CIFAR10Split(images: images, labels: (0..<count).map { UInt8($0 % 10) })!
    }
}

@Suite("Data: augmentation and batches")
struct DataAugmentationTests {
    @Test("normalisation of known pixels")
    func normalisationValues() {
        // (0 − mean)/std and (1 − mean)/std, computed by hand in double, agree to float rounding.
        let expected: [(UInt8, Int, Double)] = [
            (0, 0, -0.485 / 0.229), (255, 0, (1 - 0.485) / 0.229),
            (0, 1, -0.456 / 0.224), (255, 1, (1 - 0.456) / 0.224),
            (0, 2, -0.406 / 0.225), (255, 2, (1 - 0.406) / 0.225),
            (128, 0, (128.0 / 255 - 0.485) / 0.229), (51, 2, (0.2 - 0.406) / 0.225),
        ]
        for (pixel, channel, value) in expected {
            let computed = CIFAR10Transform.normalise(pixel: pixel, channel: channel)
            #expect(abs(Double(computed) - value) < 2e-6, "pixel \(pixel) channel \(channel)")
            #expect(CIFAR10Transform.normalisationTable[channel * 256 + Int(pixel)] == computed)
        }
        #expect(CIFAR10Transform.normalise(pixel: 0, channel: 0) == -2.117904)
    }

    @Test("crop offsets and flips give exactly the pixels of the zero-padded reference",
          arguments: [(0, 0), (0, 8), (8, 0), (8, 8), (4, 4), (3, 5), (7, 1)])
    func cropAndFlip(offsets: (Int, Int)) {
        let image = DataFixtures.syntheticImage()
        for flip in [false, true] {
            let draw = CIFAR10Transform.Draw(offsetY: offsets.0, offsetX: offsets.1, flip: flip)
            #expect(DataFixtures.firstDifference(DataFixtures.transform(image, draw), DataFixtures.referenceTransform(image, offsetY: offsets.0, offsetX: offsets.1, flip: flip)) == nil,
                    "offsets \(offsets) flip \(flip)")
        }
    }

    @Test("hand-checked pixels: padding is black before normalisation")
    func handCheckedPixels() {
        let image = DataFixtures.syntheticImage()
        let black = (0..<3).map { CIFAR10Transform.normalise(pixel: 0, channel: $0) }
        func pixel(_ output: [Float], _ y: Int, _ x: Int) -> [Float] { Array(output[((y * 32 + x) * 3)..<((y * 32 + x) * 3 + 3)]) }
        func original(_ y: Int, _ x: Int) -> [Float] {
            (0..<3).map { CIFAR10Transform.normalise(pixel: image[$0 * 1024 + y * 32 + x], channel: $0) }
        }
        // Crop at (0, 0): four rows and columns of padding, then the image shifted by 4.
        let topLeft = DataFixtures.transform(image, .init(offsetY: 0, offsetX: 0, flip: false))
        #expect(pixel(topLeft, 0, 0) == black)
        #expect(pixel(topLeft, 3, 31) == black)
        #expect(pixel(topLeft, 31, 3) == black)
        #expect(pixel(topLeft, 4, 4) == original(0, 0))
        #expect(pixel(topLeft, 31, 31) == original(27, 27))
        // Crop at (8, 8) mirrored: column x of the output is column 31 − x of the crop.
        let bottomRightFlipped = DataFixtures.transform(image, .init(offsetY: 8, offsetX: 8, flip: true))
        #expect(pixel(bottomRightFlipped, 0, 0) == black)   // crop (0, 31) = padded (8, 39)
        #expect(pixel(bottomRightFlipped, 0, 31) == original(4, 4))   // crop (0, 0) = padded (8, 8)
        #expect(pixel(bottomRightFlipped, 27, 4) == original(31, 31))   // crop (27, 27) = padded (35, 35)
        #expect(pixel(bottomRightFlipped, 28, 4) == black)
        // The identity draw is the image itself.
        let identity = DataFixtures.transform(image, .identity)
        for (y, x) in [(0, 0), (0, 31), (17, 5), (31, 31)] { #expect(pixel(identity, y, x) == original(y, x)) }
    }

    @Test("draws cover every offset and flip about half the time")
    func drawDistribution() throws {
        let batches = try CIFAR10Batches.training(DataFixtures.syntheticSplit(count: 1), batchSize: 1, seed: 42)
        var offsetsY = [Int](repeating: 0, count: 9), offsetsX = [Int](repeating: 0, count: 9), flips = 0
        for position in 0..<2000 {
            let draw = batches.draw(epoch: 3, position: position)
            offsetsY[draw.offsetY] += 1
            offsetsX[draw.offsetX] += 1
            if draw.flip { flips += 1 }
        }
        #expect(offsetsY.allSatisfy { $0 > 150 && $0 < 300 }, "\(offsetsY)")
        #expect(offsetsX.allSatisfy { $0 > 150 && $0 < 300 }, "\(offsetsX)")
        #expect(flips > 900 && flips < 1100)
    }

    @Test("batches are a pure function of (seed, epoch); epochs and seeds differ")
    func determinism() throws {
        let split = DataFixtures.syntheticSplit(count: 45)
        let a = try CIFAR10Batches.training(split, batchSize: 16, seed: 7)
        let b = try CIFAR10Batches.training(split, batchSize: 16, seed: 7)
        let other = try CIFAR10Batches.training(split, batchSize: 16, seed: 8)
        let epoch3 = Array(a.batches(epoch: 3))
        #expect(zip(epoch3, Array(b.batches(epoch: 3))).allSatisfy { DataFixtures.batchDifference($0, $1) == nil })
        // Asking for epoch 3 again after other epochs (as a resumed run would) gives the same batches.
        _ = Array(a.batches(epoch: 0))
        #expect(zip(epoch3, Array(a.batches(epoch: 3))).allSatisfy { DataFixtures.batchDifference($0, $1) == nil })
        // Other epochs and seeds: different order and different images in every batch.
        #expect(zip(epoch3, Array(a.batches(epoch: 4))).allSatisfy { $0.indices != $1.indices && $0.images != $1.images })
        #expect(zip(epoch3, Array(other.batches(epoch: 3))).allSatisfy { $0.indices != $1.indices && $0.images != $1.images })
        #expect(a.order(epoch: 3) != a.order(epoch: 4))

        // Sizes, the kept partial batch, and each batch against the reference transform of its records.
        #expect(epoch3.map(\.count) == [16, 16, 13])
        #expect(epoch3.flatMap(\.indices).sorted() == Array(0..<45))
        for (batchIndex, batch) in epoch3.enumerated() {
            #expect(batch.indices == Array(a.order(epoch: 3)[(batchIndex * 16)..<Swift.min(batchIndex * 16 + 16, 45)]))
            for (slot, record) in batch.indices.enumerated() {
                let draw = a.draw(epoch: 3, position: batchIndex * 16 + slot)
                let image = Array(split.images[(record * 3072)..<((record + 1) * 3072)])
                #expect(DataFixtures.firstDifference(Array(batch.images[(slot * 3072)..<((slot + 1) * 3072)]),
                                        DataFixtures.referenceTransform(image, offsetY: draw.offsetY, offsetX: draw.offsetX, flip: draw.flip)) == nil)
                #expect(batch.labels[slot] == record % 10)
            }
        }
        // Augmentation really varies: not every image of the epoch got the centre crop without flip.
        #expect((0..<45).contains { a.draw(epoch: 3, position: $0) != .identity })
    }

    @Test("the shuffle is a seeded Fisher–Yates over the pinned generator")
    func shuffleReference() throws {
        let batches = try CIFAR10Batches.training(DataFixtures.syntheticSplit(count: 10), batchSize: 4, seed: 99)
        // Reference: the same derivation written out, with an independent Fisher–Yates loop.
        var generator = Xoshiro256StarStar(seed: SplitMix64.derive(99, 5, 0))
        var expected = Array(0..<10)
        var i = 9
        while i > 0 {
            let j = Int(generator.next(below: UInt64(i + 1)))
            let t = expected[i]; expected[i] = expected[j]; expected[j] = t
            i -= 1
        }
        #expect(batches.order(epoch: 5) == expected)
    }

    @Test("evaluation batches: file order, no augmentation, last partial batch kept")
    func evaluation() throws {
        let split = DataFixtures.syntheticSplit(count: 21)
        let batches = try CIFAR10Batches.evaluation(split, batchSize: 8)
        let all = Array(batches.batches(epoch: 0))
        #expect(all.map(\.count) == [8, 8, 5])
        #expect(all.flatMap(\.indices) == Array(0..<21))
        #expect(zip(Array(batches.batches(epoch: 9)), all).allSatisfy { DataFixtures.batchDifference($0, $1) == nil })
        for batch in all {
            for (slot, record) in batch.indices.enumerated() {
                let image = Array(split.images[(record * 3072)..<((record + 1) * 3072)])
                #expect(DataFixtures.firstDifference(Array(batch.images[(slot * 3072)..<((slot + 1) * 3072)]), DataFixtures.referenceTransform(image, offsetY: 4, offsetX: 4, flip: false)) == nil)
            }
        }
        #expect(throws: CIFAR10Error.invalidArgument("batch size must be at least 1, found 0")) {
            try CIFAR10Batches.evaluation(split, batchSize: 0)
        }
    }

    @Test("NCHW conversion moves each value to channel-major order")
    func nchw() throws {
        let batches = try CIFAR10Batches.training(DataFixtures.syntheticSplit(count: 3), batchSize: 3, seed: 1)
        let batch = batches.batches(epoch: 0).batch(at: 0)
        var expected = [Float](repeating: .nan, count: batch.images.count)
        for n in 0..<3 {
            for c in 0..<3 {
                for y in 0..<32 {
                    for x in 0..<32 { expected[((n * 3 + c) * 32 + y) * 32 + x] = batch.images[((n * 32 + y) * 32 + x) * 3 + c] }
                }
            }
        }
        #expect(DataFixtures.firstDifference(batch.nchw(), expected) == nil)
    }

    @Test("SplitMix64 and Xoshiro256** match the published algorithms")
    func generators() {
        // SplitMix64 from seed 1234567: the reference implementation's first outputs.
        var splitMix = SplitMix64(seed: 1_234_567)
        #expect((0..<5).map { _ in splitMix.next() } == [
            6_457_827_717_110_365_317, 3_203_168_211_198_807_973, 9_817_491_932_198_370_423,
            4_593_380_528_125_082_431, 16_408_922_859_458_223_821,
        ])
        // Xoshiro256** seeded with SplitMix64(0), values from a separate transcription of the reference C code.
        var xoshiro = Xoshiro256StarStar(seed: 0)
        #expect((0..<6).map { _ in xoshiro.next() } == [
            11_091_344_671_253_066_420, 13_793_997_310_169_335_082, 1_900_383_378_846_508_768,
            7_684_712_102_626_143_532, 13_521_403_990_117_723_737, 18_442_103_541_295_991_498,
        ])
        // Bounded draws stay in range, including bounds that are not powers of two and the largest one.
        var generator = Xoshiro256StarStar(seed: 5)
        for bound: UInt64 in [1, 2, 3, 9, 1000, (1 << 63) + 1, .max] {
            for _ in 0..<200 { #expect(generator.next(below: bound) < bound) }
        }
    }
}
