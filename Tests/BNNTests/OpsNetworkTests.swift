import BNN
import Testing

@Suite("Ops: small networks end to end")
struct OpsNetworkTests {
    /// Parameters of a small ResNet-like graph on a batch of 4 images of 6×6×3.
    struct Parameters {
        let image: Tensor
        let stem, gamma, beta, blockConv, head, headBias, flatHead: Tensor
        var all: [Tensor] { [stem, gamma, beta, blockConv, head, headBias, flatHead] }

        init(seed: UInt64) throws {
            var rng = GradCheckRandom(seed: seed)
            image = try randomTensor([4, 6, 6, 3], &rng)
            stem = try randomTensor([4, 3, 3, 3], -0.5, 0.5, requiresGrad: true, &rng)
            gamma = try randomTensor([4], 0.5, 1.5, requiresGrad: true, &rng)
            beta = try randomTensor([4], -0.2, 0.2, requiresGrad: true, &rng)
            blockConv = try randomTensor([8, 4, 3, 3], -0.5, 0.5, requiresGrad: true, &rng)
            head = try randomTensor([3, 8], requiresGrad: true, &rng)
            headBias = try randomTensor([3], requiresGrad: true, &rng)
            flatHead = try randomTensor([3, 72], -0.2, 0.2, requiresGrad: true, &rng)
        }
    }

    static let labels = [2, 0, 1, 1]

    /// Smooth ops only (no ReLU, hardtanh or max-pool), so finite differences hold for every element. The stem's
    /// output feeds both the block and the shortcut, and the pooled map both heads: the tape must sum both paths.
    @Test("gradients of every parameter of a smooth ResNet-like graph match finite differences")
    func smoothGraph() throws {
        let parameters = try Parameters(seed: 51)
        let stats2d = try BatchNormStatistics(channels: 4)
        let stats1d = try BatchNormStatistics(channels: 8)
        let compared = try expectGradientsMatch(parameters.all, step: 1e-2, relative: 1e-2, absolute: 2e-4) { p in
            let x = try batchNorm2d(
                conv2d(parameters.image, weight: p[0], padding: 1), weight: p[1], bias: p[2], statistics: stats2d,
                training: true)
            let block = try multiply(conv2d(x, weight: p[3], stride: 2, padding: 1), by: 0.5)
            let pooled = try avgPool2d(
                add(block, shortcutOptionA(x, channelPadding: 2)), kernelSize: 3, stride: 1, padding: 1)
            let features = try batchNorm1d(
                globalAvgPool(pooled), weight: nil, bias: nil, statistics: stats1d, training: true)
            let logits = try add(linear(features, weight: p[4], bias: p[5]), linear(flatten(pooled), weight: p[6]))
            return try reshape(crossEntropy(logits, labels: Self.labels), to: [1])
        }
        #expect(compared == parameters.all.reduce(0) { $0 + $1.count })
    }

    /// The paper's block with its kinks (ReLU, hardtanh, max-pool). A weight step moves hundreds of
    /// pre-activations at once, so some steps cross a kink; those elements are skipped (bounded), the rest match.
    @Test("gradients through ReLU, hardtanh and max-pool match finite differences away from kinks")
    func graphWithKinks() throws {
        let parameters = try Parameters(seed: 52)
        let stats2d = try BatchNormStatistics(channels: 4)
        let stats1d = try BatchNormStatistics(channels: 8)
        var skipped = 0
        let compared = try expectGradientsMatch(
            parameters.all, step: 1e-3, relative: 2e-2, absolute: 3e-4, skipKinks: true, skipped: &skipped
        ) { p in
            let x = try batchNorm2d(
                relu(conv2d(parameters.image, weight: p[0], padding: 1)), weight: p[1], bias: p[2],
                statistics: stats2d, training: true)
            let block = try hardtanh(conv2d(x, weight: p[3], stride: 2, padding: 1))
            let pooled = try maxPool2d(
                add(block, shortcutOptionA(x, channelPadding: 2)), kernelSize: 3, stride: 1, padding: 1)
            let features = try batchNorm1d(
                globalAvgPool(pooled), weight: nil, bias: nil, statistics: stats1d, training: true)
            let logits = try add(linear(features, weight: p[4], bias: p[5]), linear(flatten(pooled), weight: p[6]))
            return try reshape(crossEntropy(logits, labels: Self.labels), to: [1])
        }
        let total = parameters.all.reduce(0) { $0 + $1.count }
        #expect(compared + skipped == total)
        #expect(skipped <= total / 10, "\(skipped) of \(total) elements skipped as kinks")
        // Every forward was a training forward: the recorded one, the unperturbed one, and two per element.
        #expect(stats2d.numBatchesTracked == 2 + 2 * total)
    }
}
