import BNN
import Testing

@Suite("Autograd")
struct AutogradTests {
    @Test("a leaf used twice in one op gets the sum of both gradients")
    func leafUsedTwiceInOneOp() throws {
        let x = try Tensor(shape: [3], data: [1, -2, 3], requiresGrad: true)
        let y = try add(x, x)
        try y.backward(gradient: Tensor(shape: [3], data: [0.5, 1, -1]))
        #expect(x.grad?.scalars == [1, 2, -2])
    }

    @Test("a leaf reached through two branches gets the sum of the branch gradients")
    func leafUsedByTwoBranches() throws {
        let x = try Tensor(shape: [4], data: [-1, 2, -3, 4], requiresGrad: true)
        // y = relu(x) + 3x: dy/dx = [x > 0] + 3.
        let y = try add(relu(x), multiply(x, by: 3))
        try y.backward(gradient: Tensor.ones(shape: [4]))
        #expect(x.grad?.scalars == [3, 4, 3, 4])
        #expect(y.scalars == [-3, 8, -9, 16])
    }

    @Test("a shared intermediate passes on the sum of its consumers' gradients exactly once")
    func sharedIntermediate() throws {
        let x = try Tensor(shape: [2], data: [2, -1], requiresGrad: true)
        let h = try multiply(x, by: 2)  // used by both branches below
        let y = try add(multiply(h, by: 3), relu(h))
        try y.backward(gradient: Tensor.ones(shape: [2]))
        // dy/dh = 3 + [h > 0]; dh/dx = 2.
        #expect(x.grad?.scalars == [8, 6])
    }

    @Test("gradients of successive backward calls accumulate until zeroGrad")
    func accumulationAcrossBackwardCalls() throws {
        let w = try Tensor(shape: [2], data: [1, 2], requiresGrad: true)
        for _ in 0..<3 {
            try multiply(w, by: 5).backward(gradient: Tensor.ones(shape: [2]))
        }
        #expect(w.grad?.scalars == [15, 15])
        w.zeroGrad()
        #expect(w.grad == nil)
        try multiply(w, by: 5).backward(gradient: Tensor.ones(shape: [2]))
        #expect(w.grad?.scalars == [5, 5])
    }

    @Test("inputs that do not require grad get none; the graph records only what leads to them")
    func onlyRequiredGradients() throws {
        var rng = GradCheckRandom(seed: 1)
        let x = try randomTensor([2, 4, 4, 3], &rng)
        let w = try randomTensor([5, 3, 3, 3], requiresGrad: true, &rng)
        let y = try conv2d(x, weight: w, padding: 1)
        #expect(y.requiresGrad && y.operation == "conv2d" && !y.isLeaf)
        let loss = try crossEntropy(globalAvgPool(y), labels: [1, 4])
        try loss.backward()
        #expect(x.grad == nil)
        #expect(w.grad?.shape == [5, 3, 3, 3])

        let constant = try relu(x)
        #expect(!constant.requiresGrad && constant.isLeaf && constant.operation == nil)
        expectBNNError(.tensor) { try constant.backward(gradient: Tensor.ones(shape: constant.shape)) }
    }

    @Test("withNoGrad records nothing, and recording resumes after it")
    func noGradMode() throws {
        var rng = GradCheckRandom(seed: 2)
        let x = try randomTensor([2, 5, 5, 3], requiresGrad: true, &rng)
        let w = try randomTensor([4, 3, 3, 3], requiresGrad: true, &rng)
        let inside = try withNoGrad {
            #expect(!GradMode.isEnabled)
            return try relu(conv2d(x, weight: w, stride: 2, padding: 1))
        }
        #expect(!inside.requiresGrad && inside.isLeaf && inside.operation == nil)
        expectBNNError(.tensor) { try inside.backward(gradient: Tensor.ones(shape: inside.shape)) }
        #expect(x.grad == nil && w.grad == nil)

        #expect(GradMode.isEnabled)
        let outside = try relu(conv2d(x, weight: w, stride: 2, padding: 1))
        #expect(outside.requiresGrad && outside.operation == "relu")
        // Same values either way.
        #expect(outside.scalars == inside.scalars)
    }

    @Test("backward frees the graph: a second backward through it is an error, leaves keep their gradient")
    func graphFreedAfterBackward() throws {
        let x = try Tensor(shape: [2], data: [1, 2], requiresGrad: true)
        let h = try multiply(x, by: 2)
        let y = try multiply(h, by: 3)
        try y.backward(gradient: Tensor.ones(shape: [2]))
        #expect(x.grad?.scalars == [6, 6])
        #expect(h.grad == nil)  // intermediate gradients are released
        let again = try multiply(h, by: 1)
        expectBNNError(.tensor) { try again.backward(gradient: Tensor.ones(shape: [2])) }
    }

    @Test("backward() needs a one-element tensor; backward(gradient:) needs the tensor's shape")
    func backwardArguments() throws {
        let x = try Tensor(shape: [2], data: [1, 2], requiresGrad: true)
        let y = try multiply(x, by: 2)
        expectBNNError(.tensor) { try y.backward() }
        expectBNNError(.tensor) { try y.backward(gradient: Tensor.ones(shape: [3])) }
        let loss = try crossEntropy(reshape(y, to: [1, 2]), labels: [0])
        try loss.backward()
        #expect(x.grad != nil)
    }

    @Test("a leaf's own backward seeds its gradient")
    func leafBackward() throws {
        let x = Tensor(3, requiresGrad: true)
        try x.backward()
        #expect(x.grad?.scalars == [1])
    }

    @Test("custom ops defined through record and accumulateGradient take part in backward")
    func customOperation() throws {
        let x = try Tensor(shape: [3], data: [1, -2, 3], requiresGrad: true)
        // y = x² element-wise, written as an outside op would be.
        let y = try Tensor(unsafeUninitializedShape: x.shape) { out in
            x.withUnsafeBufferPointer { source in for i in source.indices { out[i] = source[i] * source[i] } }
        }
        var recordedInsideBackward = true
        y.record("square", inputs: [x]) { gradient in
            // Ops used by a backward rule record nothing.
            recordedInsideBackward = try multiply(x, by: 1).requiresGrad
            let g = gradient.scalars
            let values = x.scalars
            x.accumulateGradient { buffer, accumulate in
                for i in buffer.indices { buffer[i] = (accumulate ? buffer[i] : 0) + 2 * values[i] * g[i] }
            }
        }
        try add(y, x).backward(gradient: Tensor.ones(shape: [3]))
        #expect(x.grad?.scalars == [3, -3, 7])
        #expect(!recordedInsideBackward)
    }

    @Test("tensor construction validates shapes and data")
    func construction() throws {
        expectBNNError(.tensor) { try Tensor(shape: [2, 3], data: [1, 2, 3]) }
        expectBNNError(.tensor) { try Tensor.zeros(shape: [2, -1]) }
        let t = try Tensor(shape: [2, 3], data: [1, 2, 3, 4, 5, 6])
        #expect(t.count == 6 && t.rank == 2 && t.scalars == [1, 2, 3, 4, 5, 6])
        expectBNNError(.tensor) { try t.item() }
        #expect(try Tensor(2.5).item() == 2.5)
        let copy = t.copy()
        copy.withUnsafeMutableBufferPointer { $0[0] = 9 }
        #expect(t.scalars[0] == 1)
        let view = t.detached()
        view.withUnsafeMutableBufferPointer { $0[0] = 9 }
        #expect(t.scalars[0] == 9)
    }

    @Test("randn has about the requested mean and deviation and depends only on the generator")
    func randomConstruction() throws {
        var a = GradCheckRandom(seed: 3)
        var b = GradCheckRandom(seed: 3)
        let x = try Tensor.randn(shape: [4001], mean: 1, std: 2, using: &a)
        let y = try Tensor.randn(shape: [4001], mean: 1, std: 2, using: &b)
        #expect(x.scalars == y.scalars)
        let values = x.scalars.map(Double.init)
        let mean = values.reduce(0, +) / Double(values.count)
        let std = (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)).squareRoot()
        #expect(abs(mean - 1) < 0.1 && abs(std - 2) < 0.1)
        let u = try Tensor.uniform(shape: [1000], in: -0.5...0.5, using: &a)
        #expect(u.scalars.allSatisfy { $0 >= -0.5 && $0 <= 0.5 })
    }
}
