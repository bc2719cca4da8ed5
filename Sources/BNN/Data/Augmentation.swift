/// The CIFAR-10 input transform of the paper's recipe: random 32×32 crop of the image zero-padded by 4,
/// random horizontal flip, scaling to [0, 1] and per-channel normalisation; output in HWC order.
///
/// Padding happens in pixel space with black (0), before normalisation, as torchvision's
/// `RandomCrop(32, padding=4)` does on the PIL image: a padded position therefore becomes −mean/std,
/// not 0. Float arithmetic follows `ToTensor` + `Normalize` in float32 step by step
/// (`p / 255`, then `(v − mean) / std`), so values match PyTorch bit for bit.
public enum CIFAR10Transform {
    /// Per-channel mean (R, G, B) of the normalisation.
    public static let mean: [Float] = [0.485, 0.456, 0.406]
    /// Per-channel standard deviation (R, G, B) of the normalisation.
    public static let std: [Float] = [0.229, 0.224, 0.225]
    /// Zero padding on each side before the random crop.
    public static let padding = 4
    /// Number of possible crop offsets per axis (0...2·padding).
    public static let offsetCount = 2 * padding + 1

    /// The normalised value of every byte for every channel: entry `channel * 256 + pixel`.
    public static let normalisationTable: [Float] = {
        var table = [Float](repeating: 0, count: 3 * 256)
        for channel in 0..<3 {
            for pixel in 0..<256 {
                table[channel * 256 + pixel] = normalise(pixel: UInt8(pixel), channel: channel)
            }
        }
        return table
    }()

    /// The normalised value of one pixel byte in one channel (0 = R, 1 = G, 2 = B).
    @inlinable
    public static func normalise(pixel: UInt8, channel: Int) -> Float {
        let scaled = Float(pixel) / 255
        return (scaled - mean[channel]) / std[channel]
    }

    /// The random choices for one image: the top-left corner of the crop inside the padded 40×40 image,
    /// and whether the crop is mirrored left-right.
    public struct Draw: Sendable, Equatable, Hashable {
        /// Row of the crop's top edge in the padded image, 0...8 (4 = no shift).
        public var offsetY: Int
        /// Column of the crop's left edge in the padded image, 0...8 (4 = no shift).
        public var offsetX: Int
        /// Mirror the crop horizontally.
        public var flip: Bool

        /// Creates a draw; offsets outside 0...8 are clamped.
        public init(offsetY: Int, offsetX: Int, flip: Bool) {
            self.offsetY = min(max(offsetY, 0), 2 * CIFAR10Transform.padding)
            self.offsetX = min(max(offsetX, 0), 2 * CIFAR10Transform.padding)
            self.flip = flip
        }

        /// The centre crop without flip: the image itself (evaluation).
        public static let identity = Draw(offsetY: CIFAR10Transform.padding, offsetX: CIFAR10Transform.padding, flip: false)

        /// Draws offsetY, offsetX (each uniform over 0...8) and flip (p = 0.5), in that order.
        public static func random(using generator: inout Xoshiro256StarStar) -> Draw {
            let y = Int(generator.next(below: UInt64(CIFAR10Transform.offsetCount)))
            let x = Int(generator.next(below: UInt64(CIFAR10Transform.offsetCount)))
            let flip = generator.next(below: 2) == 1
            return Draw(offsetY: y, offsetX: x, flip: flip)
        }
    }

    /// Transforms one image (3072 bytes, CHW as in the file) into 3072 normalised floats in HWC order.
    /// `table` is `normalisationTable`, passed in so the hot loop reads it through a pointer.
    @inlinable
    public static func apply(
        _ draw: Draw,
        image: UnsafeBufferPointer<UInt8>,
        table: UnsafeBufferPointer<Float>,
        into output: UnsafeMutableBufferPointer<Float>
    ) {
        precondition(image.count >= CIFAR10.imageSize && output.count >= CIFAR10.imageSize && table.count >= 3 * 256)
        let side = CIFAR10.width
        let plane = side * side
        for y in 0..<side {
            let sourceY = y + draw.offsetY - padding
            let rowInside = sourceY >= 0 && sourceY < side
            for x in 0..<side {
                let cropX = draw.flip ? side - 1 - x : x
                let sourceX = cropX + draw.offsetX - padding
                let base = (y * side + x) * 3
                if rowInside && sourceX >= 0 && sourceX < side {
                    let source = sourceY * side + sourceX
                    output[base] = table[Int(image[source])]
                    output[base + 1] = table[256 + Int(image[plane + source])]
                    output[base + 2] = table[512 + Int(image[2 * plane + source])]
                } else {
                    output[base] = table[0]
                    output[base + 1] = table[256]
                    output[base + 2] = table[512]
                }
            }
        }
    }
}

/// A batch of images ready for the network: floats in NHWC order (N × 32 × 32 × 3) and integer labels.
public struct ImageBatch: Sendable, Equatable {
    /// N × height × width × channels floats.
    public var images: [Float]
    /// N labels.
    public var labels: [Int]
    /// The record index in the split of each image (useful to check shuffling).
    public var indices: [Int]
    /// Image geometry (32, 32, 3 for CIFAR-10).
    public var height: Int
    public var width: Int
    public var channels: Int

    /// Wraps NHWC images; `images.count` must equal `labels.count · height · width · channels`.
    public init(images: [Float], labels: [Int], indices: [Int], height: Int, width: Int, channels: Int) {
        precondition(images.count == labels.count * height * width * channels && indices.count == labels.count,
                     "ImageBatch: \(images.count) floats for \(labels.count) labels of \(height)×\(width)×\(channels)")
        self.images = images
        self.labels = labels
        self.indices = indices
        self.height = height
        self.width = width
        self.channels = channels
    }

    /// The number of images.
    public var count: Int { labels.count }

    /// The images in NCHW order (N × channels × height × width), for code that wants PyTorch's layout.
    public func nchw() -> [Float] {
        var result = [Float](repeating: 0, count: images.count)
        let (h, w, c) = (height, width, channels)
        images.withUnsafeBufferPointer { source in
            result.withUnsafeMutableBufferPointer { destination in
                for n in 0..<count {
                    let imageBase = n * h * w * c
                    for y in 0..<h {
                        for x in 0..<w {
                            for channel in 0..<c {
                                destination[imageBase + (channel * h + y) * w + x] = source[imageBase + (y * w + x) * c + channel]
                            }
                        }
                    }
                }
            }
        }
        return result
    }
}
