import CKernels
import Foundation

extension PackedModel {
    /// Packs a ResNet-20 1W1A from its state dict (PyTorch names and shapes, as `ResNet20.stateDict()` writes
    /// and the authors' PyTorch model saves): sign(W) of each binary convolution as bits; α = mean|W| and the
    /// eval-mode batch norm that follows each convolution folded into a per-channel multiply/add in the same
    /// order of operations as the training graph (α·acc, ReLU, then γ·(x − μ)/√(σ² + ε) + β); the stem and the
    /// classifier stay float32, BatchNorm1d folded into the pooling step.
    ///
    /// Only the 1W1A network has binary activations for the packed kernels; 1W32A and full-precision models
    /// are refused by the caller (`bnn export`), whose state dicts have the same names.
    public static func resNet20(stateDict: [String: SafeTensors.TensorData], classes: Int = 10) throws -> PackedModel {
        var reader = StateDictReader(tensors: stateDict)
        var layers: [PackedLayer] = []
        var tensors: [String: SafeTensors.TensorData] = [:]

        func put(_ name: String, _ values: [Float], _ shape: [Int]) throws {
            tensors[name] = try SafeTensors.TensorData(values, shape: shape)
        }

        // Stem: conv1 (real) → ReLU → bn1; writes the block input as floats (buffer 1) and signs (buffer 2).
        let stem = try reader.floats("conv1.weight", shape: [16, 3, 3, 3])
        let (stemScale, stemBias) = try reader.batchNorm("bn1", channels: 16)
        try put("conv1.weight", ohwi(stem, out: 16, channels: 3, kernel: 3), [16, 3, 3, 3])
        try put("conv1.scale", stemScale, [16])
        try put("conv1.bias", stemBias, [16])
        layers.append(PackedLayer(
            name: "conv1", op: .conv, input: 0, output: 1, outputBits: 2, height: 32, width: 32, channels: 3,
            outChannels: 16, kernel: 3, stride: 1, padding: 1, reluBefore: true))

        var xf = 1, xb = 2, size = 32, channels = 16
        for (stage, planes) in [16, 32, 64].enumerated() {
            // Buffers of this stage: two float/bits pairs used in turn, the middle signs, the shortcut.
            let base = 3 + 6 * stage
            let pairs = [(base, base + 1), (base + 2, base + 3)]
            let middle = base + 4, shortcut = base + 5
            for block in 0..<3 {
                let name = "layer\(stage + 1).\(block)"
                let stride = stage > 0 && block == 0 ? 2 : 1
                let outSize = (size + 2 - 3) / stride + 1
                var residual = xf
                if stride != 1 || channels != planes {
                    layers.append(PackedLayer(
                        name: "\(name).shortcut", op: .shortcut, input: xf, output: shortcut, height: size,
                        width: size, channels: channels, outChannels: planes, stride: 2))
                    residual = shortcut
                }
                let (out, outBits) = (block == 0 || xf != pairs[0].0) ? pairs[0] : pairs[1]
                for (index, (input, inChannels, convStride, inSize)) in
                    [(xb, channels, stride, size), (middle, planes, 1, outSize)].enumerated()
                {
                    let conv = "\(name).conv\(index + 1)"
                    let weight = try reader.floats("\(conv).weight", shape: [planes, inChannels, 3, 3])
                    let (scale, bias) = try reader.batchNorm("\(name).bn\(index + 1)", channels: planes)
                    tensors["\(conv).bits"] = try SafeTensors.TensorData(
                        signBits(weight, out: planes, channels: inChannels, kernel: 3),
                        shape: [planes * 9, (inChannels + 63) / 64])
                    try put("\(conv).prescale", [Float](repeating: meanAbs(weight), count: planes), [planes])
                    try put("\(conv).scale", scale, [planes])
                    try put("\(conv).bias", bias, [planes])
                    let last = index == 1
                    layers.append(PackedLayer(
                        name: conv, op: .bconv, input: input, residual: last ? residual : nil,
                        output: last ? out : nil, outputBits: last ? outBits : middle, height: inSize,
                        width: inSize, channels: inChannels, outChannels: planes, kernel: 3, stride: convStride,
                        padding: 1, reluBefore: true))
                }
                xf = out
                xb = outBits
                size = outSize
                channels = planes
            }
        }
        // Head: global average pool → bn2 (BatchNorm1d, folded into the pool) → linear.
        let (headScale, headBias) = try reader.batchNorm("bn2", channels: 64)
        try put("pool.scale", headScale, [64])
        try put("pool.bias", headBias, [64])
        layers.append(PackedLayer(
            name: "pool", op: .globalAvgPool, input: xf, output: 21, height: size, width: size, channels: 64,
            outChannels: 64))
        try put("linear.weight", try reader.floats("linear.weight", shape: [classes, 64]), [classes, 64])
        try put("linear.bias", try reader.floats("linear.bias", shape: [classes]), [classes])
        layers.append(PackedLayer(
            name: "linear", op: .linear, input: 21, output: 22, height: 1, width: 1, channels: 64,
            outChannels: classes))
        try reader.checkAllUsed()
        return try PackedModel(
            graph: PackedGraph(model: "resnet20-1w1a", input: [32, 32, 3], classes: classes, layers: layers),
            tensors: tensors)
    }
}

/// OIHW → OHWI (the layout of NHWC patches).
private func ohwi(_ w: [Float], out: Int, channels: Int, kernel: Int) -> [Float] {
    var result = [Float](repeating: 0, count: w.count)
    for o in 0..<out {
        for c in 0..<channels {
            for tap in 0..<(kernel * kernel) {
                result[(o * kernel * kernel + tap) * channels + c] = w[(o * channels + c) * kernel * kernel + tap]
            }
        }
    }
    return result
}

/// sign(W) of OIHW weights as bits, rows (o, kh, kw) of ck_words(C) words; bit 1 = negative, sign(0) = +1.
private func signBits(_ w: [Float], out: Int, channels: Int, kernel: Int) -> [UInt64] {
    let words = (channels + 63) / 64, taps = kernel * kernel
    var bits = [UInt64](repeating: 0, count: out * taps * words)
    for o in 0..<out {
        for c in 0..<channels {
            for tap in 0..<taps where w[(o * channels + c) * taps + tap] < 0 {
                bits[(o * taps + tap) * words + c / 64] |= 1 << UInt64(c % 64)
            }
        }
    }
    return bits
}

/// α = mean|W|, computed exactly as the training op does (in double, by the same kernel).
private func meanAbs(_ w: [Float]) throws -> Float {
    var mean = 0.0
    let status = w.withUnsafeBufferPointer { ck_abs_moments_f32($0.baseAddress, Int64($0.count), &mean, nil) }
    guard status == CK_OK else { throw PackedModelError("α = mean|W|: \(String(cString: ck_status_message(status)))") }
    return Float(mean)
}

/// Reads named tensors of a state dict, checking dtype and shape, and tracking which were used.
private struct StateDictReader {
    let tensors: [String: SafeTensors.TensorData]
    private var used = Set<String>()

    init(tensors: [String: SafeTensors.TensorData]) { self.tensors = tensors }

    mutating func floats(_ name: String, shape: [Int]) throws -> [Float] {
        guard let tensor = tensors[name] else { throw PackedModelError("state dict: tensor \"\(name)\" is missing") }
        guard tensor.shape == shape else {
            throw PackedModelError("state dict: tensor \"\(name)\" has shape \(tensor.shape), expected \(shape)")
        }
        used.insert(name)
        switch tensor.dtype {
        case .f32: return try tensor.floats()
        case .f64: return try tensor.doubles().map { Float($0) }
        default: throw PackedModelError("state dict: tensor \"\(name)\" is \(tensor.dtype.rawValue), expected F32")
        }
    }

    /// Eval-mode batch norm as y = x·scale + shift, computed as the training op computes it.
    mutating func batchNorm(_ prefix: String, channels: Int, eps: Float = 1e-5) throws -> ([Float], [Float]) {
        let gamma = try floats("\(prefix).weight", shape: [channels])
        let beta = try floats("\(prefix).bias", shape: [channels])
        let mean = try floats("\(prefix).running_mean", shape: [channels])
        let variance = try floats("\(prefix).running_var", shape: [channels])
        used.insert("\(prefix).num_batches_tracked")
        var scale = [Float](repeating: 0, count: channels)
        var shift = scale
        for c in 0..<channels {
            let invstd = Float(1 / (Double(variance[c]) + Double(eps)).squareRoot())
            scale[c] = gamma[c] * invstd
            shift[c] = beta[c] - mean[c] * scale[c]
        }
        return (scale, shift)
    }

    /// Fails on a tensor the network does not use (ignoring optimizer state of a checkpoint).
    func checkAllUsed() throws {
        if let extra = tensors.keys.sorted().first(where: { !used.contains($0) && !$0.hasPrefix("optimizer.") }) {
            throw PackedModelError("state dict: tensor \"\(extra)\" is not part of ResNet-20 1W1A")
        }
    }
}
