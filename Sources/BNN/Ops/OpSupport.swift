import CKernels

// Helpers shared by the op files: raw pointers for C calls and argument checks with messages that name the
// op, the argument and the shapes involved.

extension Tensor {
    /// First element, for C calls. The tensor must stay alive across the call: ops only use it on their
    /// arguments, on results they return, and on tensors captured by a backward rule.
    var pointer: UnsafeMutablePointer<Float> { storage.pointer }
}

/// Throws unless `tensor` has rank `rank`; `layout` spells the expected dimensions, e.g. "[N, H, W, C]".
func requireRank(_ tensor: Tensor, _ rank: Int, _ name: String, of operation: String, layout: String) throws {
    guard tensor.rank == rank else {
        throw BNNError(.tensor, "\(operation): `\(name)` must have rank \(rank) \(layout), got shape \(tensor.shape)")
    }
}

/// Throws unless `tensor` has exactly `shape`.
func requireShape(_ tensor: Tensor, _ shape: [Int], _ name: String, of operation: String, because reason: String)
    throws
{
    guard tensor.shape == shape else {
        throw BNNError(.tensor, "\(operation): `\(name)` must have shape \(shape) (\(reason)), got \(tensor.shape)")
    }
}

/// Throws unless every size of `tensor` is at least 1 (the kernels reject empty tensors).
func requireNonEmpty(_ tensor: Tensor, _ name: String, of operation: String) throws {
    guard tensor.count > 0 else {
        throw BNNError(.tensor, "\(operation): `\(name)` is empty (shape \(tensor.shape))")
    }
}

/// Geometry of a window op (convolution or pooling) over an NHWC input, with its output size; throws naming
/// `operation` when the window does not fit or a size is out of range.
func windowGeometry(
    input: [Int], kernel: (Int, Int), stride: Int, padding: Int, operation: String
) throws -> (geometry: ConvGeometry, outputHeight: Int, outputWidth: Int) {
    guard stride >= 1 else { throw BNNError(.tensor, "\(operation): `stride` must be at least 1, got \(stride)") }
    guard padding >= 0 else { throw BNNError(.tensor, "\(operation): `padding` must be at least 0, got \(padding)") }
    let (height, width) = (input[1], input[2])
    guard kernel.0 <= height + 2 * padding, kernel.1 <= width + 2 * padding else {
        throw BNNError(.tensor,
            "\(operation): a \(kernel.0)×\(kernel.1) window does not fit the \(height)×\(width) input padded by "
                + "\(padding) (input \(input))")
    }
    let geometry = ConvGeometry(
        batch: input[0], height: height, width: width, channels: input[3], kernelHeight: kernel.0,
        kernelWidth: kernel.1, strideHeight: stride, strideWidth: stride, padHeight: padding, padWidth: padding)
    let (outputHeight, outputWidth) = try geometry.validatedOutputSize(operation: operation, argument: nil)
    return (geometry, outputHeight, outputWidth)
}

/// Adds the per-channel `values` to a small gradient (biases, γ, β), creating it if needed.
func accumulateChannels(_ values: [Float], into tensor: Tensor) {
    tensor.accumulateGradient { buffer, accumulate in
        for c in values.indices { buffer[c] = accumulate ? buffer[c] + values[c] : values[c] }
    }
}
