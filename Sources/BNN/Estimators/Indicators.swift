import CKernels

/// The two indicators of the paper's "equilibrium" (docs/method.md §3), summed over the latent weights of a network's
/// binary convolutions (not the real-valued first convolution or the classifier).
public enum Indicators {
    /// Estimating error: Σ_layers ‖sign(W)·|W|^(1/o) − sign(W)‖₂, how far ReSTE's equivalent forward function
    /// f_o(w) = sign(w)·|w|^(1/o) is from sign (the authors evaluate it with o = o_end). With this library's
    /// sign(0) = +1 an exactly zero weight counts 1 in the squared norm (0 with PyTorch's sign(0) = 0). NaN if `o`
    /// is not a finite number > 0; empty tensors contribute 0.
    public static func estimatingError(weights: [Tensor], o: Float) -> Double {
        guard o.isFinite, o > 0 else { return .nan }
        var total = 0.0
        for weight in weights where weight.count > 0 {
            var norm = 0.0
            let status = weight.withUnsafeBufferPointer {
                ck_estimating_error_f32($0.baseAddress, Int64($0.count), o, &norm)
            }
            // Arguments were checked above, so only an allocation failure can remain.
            guard status == CK_OK else { return .nan }
            total += norm
        }
        return total
    }

    /// Gradient stability: Σ_layers Var(|∂L/∂W|) over the elements of each layer's `grad`, with the unbiased
    /// (N − 1) variance of `torch.var`, which the authors' code uses; lower means more stable. Tensors without a
    /// gradient (or with fewer than two elements, where the unbiased variance is undefined) contribute 0.
    public static func gradientStability(weights: [Tensor]) -> Double {
        var total = 0.0
        for weight in weights {
            guard let grad = weight.grad, grad.count >= 2 else { continue }
            var mean = 0.0
            var squaredDeviations = 0.0
            let status = grad.withUnsafeBufferPointer {
                ck_abs_moments_f32($0.baseAddress, Int64($0.count), &mean, &squaredDeviations)
            }
            guard status == CK_OK else { return .nan }
            total += squaredDeviations / Double(grad.count - 1)
        }
        return total
    }
}
