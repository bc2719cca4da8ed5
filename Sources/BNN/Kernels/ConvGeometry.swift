import CKernels

/// Geometry of a 2-d convolution or pooling window over an NHWC input (`ck_conv_shape`).
public struct ConvGeometry: Sendable, Equatable, CustomStringConvertible {
    /// Input batch size N.
    public var batch: Int
    /// Input height H.
    public var height: Int
    /// Input width W.
    public var width: Int
    /// Input channels C.
    public var channels: Int
    /// Window height.
    public var kernelHeight: Int
    /// Window width.
    public var kernelWidth: Int
    /// Vertical step between windows.
    public var strideHeight: Int
    /// Horizontal step between windows.
    public var strideWidth: Int
    /// Zero padding above and below.
    public var padHeight: Int
    /// Zero padding left and right.
    public var padWidth: Int

    /// A geometry with every size spelled out.
    public init(
        batch: Int, height: Int, width: Int, channels: Int, kernelHeight: Int, kernelWidth: Int,
        strideHeight: Int = 1, strideWidth: Int = 1, padHeight: Int = 0, padWidth: Int = 0
    ) {
        self.batch = batch
        self.height = height
        self.width = width
        self.channels = channels
        self.kernelHeight = kernelHeight
        self.kernelWidth = kernelWidth
        self.strideHeight = strideHeight
        self.strideWidth = strideWidth
        self.padHeight = padHeight
        self.padWidth = padWidth
    }

    /// A square window with the same stride and padding in both directions.
    public init(batch: Int, height: Int, width: Int, channels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0) {
        self.init(
            batch: batch, height: height, width: width, channels: channels, kernelHeight: kernelSize,
            kernelWidth: kernelSize, strideHeight: stride, strideWidth: stride, padHeight: padding, padWidth: padding)
    }

    /// The C struct.
    public var cShape: ck_conv_shape {
        ck_conv_shape(
            batch: Int64(batch), height: Int64(height), width: Int64(width), channels: Int64(channels),
            kernel_h: Int64(kernelHeight), kernel_w: Int64(kernelWidth), stride_h: Int64(strideHeight),
            stride_w: Int64(strideWidth), pad_h: Int64(padHeight), pad_w: Int64(padWidth))
    }

    public var description: String {
        "N\(batch) H\(height) W\(width) C\(channels), kernel \(kernelHeight)×\(kernelWidth), "
            + "stride \(strideHeight)×\(strideWidth), padding \(padHeight)×\(padWidth)"
    }

    /// Output height and width; throws, naming the field, if a size is invalid or the window does not fit.
    public func outputSize() throws -> (height: Int, width: Int) {
        try validatedOutputSize(operation: "ConvGeometry.outputSize", argument: nil)
    }

    /// Input pixels N·H·W (the rows of a packed NHWC input). Only meaningful for a valid geometry.
    public var inputPixels: Int { batch * height * width }

    /// `outputSize()` for a kernel entry point: errors name `operation` and the field as `argument.field`.
    func validatedOutputSize(operation: String, argument: String?) throws -> (height: Int, width: Int) {
        func name(_ field: String) -> String { argument.map { "\($0).\(field)" } ?? field }
        let sizes: [(Int, String)] = [
            (batch, "batch"), (height, "height"), (width, "width"), (channels, "channels"),
            (kernelHeight, "kernelHeight"), (kernelWidth, "kernelWidth"), (strideHeight, "strideHeight"),
            (strideWidth, "strideWidth"),
        ]
        for (value, field) in sizes { try Require.size(value, name(field), of: operation) }
        for (value, field) in [(padHeight, "padHeight"), (padWidth, "padWidth")] {
            guard value >= 0, value <= Require.maximumSize else {
                throw KernelError.argument(
                    name(field), of: operation, "must be between 0 and \(Require.maximumSize), got \(value)",
                    status: CK_ERR_INVALID_SIZE)
            }
        }
        guard kernelHeight <= height + 2 * padHeight else {
            throw KernelError.argument(
                name("kernelHeight"), of: operation,
                "is \(kernelHeight), larger than the padded input height \(height) + 2·\(padHeight)")
        }
        guard kernelWidth <= width + 2 * padWidth else {
            throw KernelError.argument(
                name("kernelWidth"), of: operation,
                "is \(kernelWidth), larger than the padded input width \(width) + 2·\(padWidth)")
        }
        var shape = cShape
        var outHeight: Int64 = 0
        var outWidth: Int64 = 0
        // The remaining limits (products of sizes that must stay below 2³¹) are left to the C check.
        let status = ck_conv_output_size(&shape, &outHeight, &outWidth)
        guard status == CK_OK else {
            throw KernelError.argument(
                argument ?? "geometry", of: operation, "(\(self)) describes tensors larger than the kernels accept",
                status: status)
        }
        return (Int(outHeight), Int(outWidth))
    }
}
