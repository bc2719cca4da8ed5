import Foundation

/// A rectangle of an image in whole pixels: torchvision's (i, j, h, w).
public struct CropRegion: Sendable, Equatable, Hashable {
    public var top: Int
    public var left: Int
    public var height: Int
    public var width: Int

    public init(top: Int, left: Int, height: Int, width: Int) {
        self.top = top
        self.left = left
        self.height = height
        self.width = width
    }
}

/// torchvision's `RandomResizedCrop.get_params`: up to ten attempts at a rectangle whose area is a uniform fraction
/// of the image's (`scale`) and whose aspect ratio w/h is log-uniform in `ratio`, with w and h rounded half to even
/// as Python's `round`; the first that fits in the image is placed uniformly at random. When none fits, the centre
/// crop of the largest rectangle whose ratio is clamped into `ratio` (the whole image when its ratio is inside).
/// Uniform draws come from the pipeline's pinned generator (53-bit doubles), not from torch's.
public enum RandomResizedCrop {
    public static let defaultScale: ClosedRange<Double> = 0.08...1
    public static let defaultRatio: ClosedRange<Double> = (3.0 / 4)...(4.0 / 3)
    /// Attempts before the centre-crop fallback.
    public static let attempts = 10

    /// The crop of an image of `width` × `height` pixels (both ≥ 1).
    public static func region(
        width: Int, height: Int, scale: ClosedRange<Double> = defaultScale, ratio: ClosedRange<Double> = defaultRatio,
        using generator: inout Xoshiro256StarStar
    ) -> CropRegion {
        let area = Double(width) * Double(height)
        let logRatio = log(ratio.lowerBound)...log(ratio.upperBound)
        for _ in 0..<attempts {
            let targetArea = area * uniform(scale, &generator)
            let aspectRatio = exp(uniform(logRatio, &generator))
            let w = Int((targetArea * aspectRatio).squareRoot().rounded(.toNearestOrEven))
            let h = Int((targetArea / aspectRatio).squareRoot().rounded(.toNearestOrEven))
            if w > 0 && w <= width && h > 0 && h <= height {
                let top = Int(generator.next(below: UInt64(height - h + 1)))
                let left = Int(generator.next(below: UInt64(width - w + 1)))
                return CropRegion(top: top, left: left, height: h, width: w)
            }
        }
        return fallback(width: width, height: height, ratio: ratio)
    }

    /// The centre crop used when no attempt fits.
    public static func fallback(width: Int, height: Int, ratio: ClosedRange<Double> = defaultRatio) -> CropRegion {
        let inputRatio = Double(width) / Double(height)
        var w = width, h = height
        if inputRatio < ratio.lowerBound {
            h = Int((Double(w) / ratio.lowerBound).rounded(.toNearestOrEven))
        } else if inputRatio > ratio.upperBound {
            w = Int((Double(h) * ratio.upperBound).rounded(.toNearestOrEven))
        }
        return CropRegion(top: (height - h) / 2, left: (width - w) / 2, height: h, width: w)
    }

    /// A uniform double in [lower, upper) from 53 random bits.
    static func uniform(_ range: ClosedRange<Double>, _ generator: inout Xoshiro256StarStar) -> Double {
        let unit = Double(generator.next() >> 11) * 0x1p-53
        return range.lowerBound + (range.upperBound - range.lowerBound) * unit
    }
}

/// torchvision's evaluation geometry: `Resize(resize)` (the shorter side to `resize`, the longer one to
/// ⌊resize · long / short⌋) followed by `CenterCrop(size)` (offsets rounded half to even).
public enum ResizeCenterCrop {
    /// The size after `Resize(shorter)` of a `width` × `height` image.
    public static func resized(width: Int, height: Int, shorter: Int) -> (width: Int, height: Int) {
        if width <= height {
            return (shorter, Int(Double(shorter * height) / Double(width)))
        }
        return (Int(Double(shorter * width) / Double(height)), shorter)
    }

    /// The `size` × `size` centre crop of a `width` × `height` image (at least `size` on each side).
    public static func centre(width: Int, height: Int, size: Int) -> CropRegion {
        CropRegion(
            top: Int((Double(height - size) / 2).rounded(.toNearestOrEven)),
            left: Int((Double(width - size) / 2).rounded(.toNearestOrEven)), height: size, width: size)
    }
}

/// Bilinear resampling as Pillow's `Image.resize(..., BILINEAR)` computes it for 8-bit images: a separable
/// triangle filter whose support widens with the reduction factor (so downscaling averages every source pixel, as
/// antialiasing), weights normalised per output pixel and rounded to 22-bit fixed point, the horizontal pass first,
/// each pass rounded and clamped to 8 bits. For a whole-pixel region of a fully decoded image the output is
/// therefore the bytes Pillow gives for `image.crop(region).resize(size, BILINEAR)`, the operation torchvision's
/// transforms run on PIL images.
public enum BilinearResize {
    /// Fixed-point precision of the weights (Pillow's for 8-bit images).
    static let precisionBits = 22

    /// Per output pixel: the first source pixel read, how many, and their weights.
    struct Coefficients {
        var first: [Int] = []
        var count: [Int] = []
        var weights: [Int] = []
        var stride = 0
    }

    /// Coefficients along one axis for outputs `outputs` of `outputSize`, sampling [start, end) of the source
    /// (fractional allowed) and reading only source pixels in `valid`. The arithmetic is done relative to
    /// `valid.lowerBound`, so a whole-pixel region gives the coefficients of the cropped image.
    static func coefficients(start: Double, end: Double, valid: Range<Int>, outputSize: Int, outputs: Range<Int>) -> Coefficients {
        let origin = valid.lowerBound
        let inputStart = start - Double(origin), inputEnd = end - Double(origin)
        let inputSize = valid.count
        let scale = (inputEnd - inputStart) / Double(outputSize)
        let filterScale = max(scale, 1)
        let support = filterScale   // the triangle's support is 1
        let stride = Int(support.rounded(.up)) * 2 + 1
        var result = Coefficients()
        result.stride = stride
        result.weights = [Int](repeating: 0, count: stride * outputs.count)
        var weights = [Double](repeating: 0, count: stride)
        for (slot, output) in outputs.enumerated() {
            let centre = inputStart + (Double(output) + 0.5) * scale
            let inverse = 1 / filterScale
            let low = max(Int(centre - support + 0.5), 0)
            let count = min(Int(centre + support + 0.5), inputSize) - low
            var total = 0.0
            for x in 0..<max(count, 0) {
                let distance = abs((Double(x + low) - centre + 0.5) * inverse)
                let w = distance < 1 ? 1 - distance : 0
                weights[x] = w
                total += w
            }
            for x in 0..<max(count, 0) {
                var w = weights[x]
                if total != 0 { w /= total }
                let fixed = w * Double(1 << precisionBits)
                result.weights[slot * stride + x] = Int((w < 0 ? fixed - 0.5 : fixed + 0.5).rounded(.towardZero))
            }
            result.first.append(low + origin)
            result.count.append(max(count, 0))
        }
        return result
    }

    @inline(__always)
    static func clip8(_ value: Int) -> UInt8 {
        let shifted = value >> precisionBits
        return shifted <= 0 ? 0 : shifted >= 255 ? 255 : UInt8(shifted)
    }

    /// Resamples the region `box` = (x0, y0, x1, y1) of `image` (source pixel coordinates, fractional allowed) to
    /// `outputWidth` × `outputHeight` pixels and returns the `columns` × `rows` part of that output as RGB bytes.
    /// Only source pixels inside ⌊x0⌋ ..< ⌈x1⌉ (and likewise in y) are read.
    public static func resample(
        _ image: RGBImage, box: (x0: Double, y0: Double, x1: Double, y1: Double), outputWidth: Int, outputHeight: Int,
        columns: Range<Int>, rows: Range<Int>
    ) -> [UInt8] {
        let validX = max(0, Int(box.x0.rounded(.down)))..<min(image.width, Int(box.x1.rounded(.up)))
        let validY = max(0, Int(box.y0.rounded(.down)))..<min(image.height, Int(box.y1.rounded(.up)))
        let horizontal = coefficients(start: box.x0, end: box.x1, valid: validX, outputSize: outputWidth, outputs: columns)
        let vertical = coefficients(start: box.y0, end: box.y1, valid: validY, outputSize: outputHeight, outputs: rows)
        // The source rows the vertical pass reads.
        var firstRow = Int.max, endRow = Int.min
        for slot in 0..<rows.count where vertical.count[slot] > 0 {
            firstRow = min(firstRow, vertical.first[slot])
            endRow = max(endRow, vertical.first[slot] + vertical.count[slot])
        }
        var output = [UInt8](repeating: 0, count: columns.count * rows.count * 3)
        guard firstRow < endRow else { return output }
        let width = columns.count
        let half = 1 << (precisionBits - 1)
        var temporary = [UInt8](repeating: 0, count: (endRow - firstRow) * width * 3)
        image.pixels.withUnsafeBufferPointer { source in
            horizontal.weights.withUnsafeBufferPointer { weights in
                temporary.withUnsafeMutableBufferPointer { target in
                    for y in firstRow..<endRow {
                        let sourceRow = y * image.width * 3
                        let targetRow = (y - firstRow) * width * 3
                        for slot in 0..<width {
                            let first = horizontal.first[slot], count = horizontal.count[slot]
                            let k = slot * horizontal.stride
                            var r = half, g = half, b = half
                            for x in 0..<count {
                                let p = sourceRow + (first + x) * 3
                                let w = weights[k + x]
                                r += Int(source[p]) * w
                                g += Int(source[p + 1]) * w
                                b += Int(source[p + 2]) * w
                            }
                            target[targetRow + slot * 3] = clip8(r)
                            target[targetRow + slot * 3 + 1] = clip8(g)
                            target[targetRow + slot * 3 + 2] = clip8(b)
                        }
                    }
                }
            }
        }
        temporary.withUnsafeBufferPointer { source in
            vertical.weights.withUnsafeBufferPointer { weights in
                output.withUnsafeMutableBufferPointer { target in
                    for slot in 0..<rows.count {
                        let first = vertical.first[slot] - firstRow, count = vertical.count[slot]
                        let k = slot * vertical.stride
                        let targetRow = slot * width * 3
                        for index in 0..<(width * 3) {
                            var sum = half
                            for y in 0..<count {
                                sum += Int(source[(first + y) * width * 3 + index]) * weights[k + y]
                            }
                            target[targetRow + index] = clip8(sum)
                        }
                    }
                }
            }
        }
        return output
    }
}
