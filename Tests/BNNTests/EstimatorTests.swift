import Foundation
import Testing

@testable import BNN

/// Runs `estimator.backward` on `x` with incoming gradient `g`; with `initial`, accumulates into a copy of it.
private func runEstimatorBackward(
    _ estimator: any SignEstimator, x: [Float], g: [Float], initial: [Float]? = nil
) -> [Float] {
    var dx = initial ?? [Float](repeating: .nan, count: x.count)
    x.withUnsafeBufferPointer { x in
        g.withUnsafeBufferPointer { g in
            dx.withUnsafeMutableBufferPointer { dx in
                estimator.backward(
                    input: x.baseAddress!, gradOutput: g.baseAddress!, gradInput: dx.baseAddress!, count: x.count,
                    accumulate: initial != nil)
            }
        }
    }
    return dx
}

/// r'(x) of ReSTE straight from docs/method.md §2, in double.
private func handResteDerivative(_ x: Float, o: Double) -> Double {
    let a = Double(abs(x))
    let (t, delta) = (1.5, Double(Float(0.1)))
    if a > t { return 0 }
    if a > delta { return (1 / o) * pow(a, (1 - o) / o) }
    return pow(delta, 1 / o) / delta
}

/// Records an issue for each element where |got − expected| > tolerance·max(1, |expected|).
private func expectCloseElements(
    _ got: [Float], _ expected: [Double], tolerance: Double, _ what: String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(got.count == expected.count, "\(what): lengths differ", sourceLocation: sourceLocation)
    var failures: [String] = []
    for i in 0..<min(got.count, expected.count) {
        let error = abs(Double(got[i]) - expected[i])
        if !(error <= tolerance * max(1, abs(expected[i]))) { failures.append("[\(i)] got \(got[i]), expected \(expected[i])") }
    }
    if !failures.isEmpty {
        Issue.record(
            "\(what): \(failures.count) of \(got.count) differ; first: \(failures.prefix(4).joined(separator: "; "))",
            sourceLocation: sourceLocation)
    }
}

@Suite("Estimators")
struct EstimatorTests {
    /// The points of docs/method.md §2's branches: 0, ±δ, ±t, just beyond t, and the middle of (δ, t].
    static let boundaryPoints: [Float] = [0, 0.1, -0.1, 1.5, -1.5, 1.5001, -1.5001, 0.7, -0.7, 0.05, -1.2, 1.2, 0.1001]

    @Test("ReSTE at 0, ±δ, ±t, beyond t and in the middle, for o = 1, 2, 3 (values worked out by hand)")
    func resteBoundaries() {
        // r'(x) by hand: flat = δ^(1/o)/δ on |x| ≤ δ, (1/o)·|x|^((1−o)/o) on (δ, t], 0 beyond t.
        let byHand: [Float: [Float: Double]] = [
            1: [0: 1, 0.1: 1, 1.5: 1, 1.5001: 0, 0.7: 1],
            2: [0: 3.16227766017, 0.1: 3.16227766017, 1.5: 0.408248290464, 1.5001: 0, 0.7: 0.597614304667,
                1.2: 0.456435464588],
            3: [0: 4.64158883361, 0.1: 4.64158883361, 1.5: 0.254380942790, 1.5001: 0, 0.7: 0.422811429401,
                1.2: 0.295182935884],
        ]
        let x = Self.boundaryPoints
        let g = x.indices.map { Float($0 % 3) - 1.5 }  // −1.5, −0.5, 0.5, …: the product must use g
        for o: Float in [1, 2, 3] {
            var estimator = ReSTE(oEnd: 3)
            estimator.o = o
            let dx = runEstimatorBackward(estimator, x: x, g: g)
            for (i, value) in x.enumerated() {
                if let hand = byHand[o]![abs(value)] {
                    let expected = hand * Double(g[i])
                    #expect(
                        abs(Double(dx[i]) - expected) <= 1e-6 * max(1, abs(expected)),
                        "o = \(o), x = \(value): got \(dx[i]), by hand \(expected)")
                }
            }
            expectCloseElements(dx, x.indices.map { handResteDerivative(x[$0], o: Double(o)) * Double(g[$0]) }, tolerance: 1e-6,
                        "ReSTE o = \(o)")
        }
        // o = 1 is exactly the clipped STE at 1.5.
        let clipped = runEstimatorBackward(ReSTE(oEnd: 3), x: x, g: g)
        #expect(clipped == x.indices.map { abs(x[$0]) <= 1.5 ? g[$0] : 0 })
    }

    @Test("ReSTE over many values and non-integer powers matches the formula; NaN input gives 0")
    func resteDense() {
        let count = 70_001  // several parallel chunks and a vector remainder
        let x = (0..<count).map { -1.7 + 3.4 * Float($0) / Float(count) }
        let g = (0..<count).map { Float(($0 * 7919) % 13) / 6 - 1 }
        for o: Float in [1.3, 1.5857864, 2.6871311, 5] {
            var estimator = ReSTE(oEnd: 3)
            estimator.o = o
            let dx = runEstimatorBackward(estimator, x: x, g: g)
            expectCloseElements(dx, x.indices.map { handResteDerivative(x[$0], o: Double(o)) * Double(g[$0]) }, tolerance: 1e-6,
                        "ReSTE o = \(o)")
        }
        var estimator = ReSTE()
        estimator.o = 2
        #expect(runEstimatorBackward(estimator, x: [.nan, .infinity, -.infinity], g: [1, 1, 1]) == [0, 0, 0])
    }

    @Test("STE, identity, ApproxSign and EDE at chosen points")
    func otherFormulas() {
        let x: [Float] = [0, 0.25, -0.5, 1, -1, 1.0001, -3, 0.999]
        let g: [Float] = [2, -1, 0.5, 3, -2, 1, 4, -0.25]
        // STE: the gradient where |x| ≤ 1.
        #expect(runEstimatorBackward(STE(), x: x, g: g) == [2, -1, 0.5, 3, -2, 0, 0, -0.25])
        #expect(runEstimatorBackward(IdentitySTE(), x: x, g: g) == g)
        // ApproxSign: 2 − 2|x| on |x| ≤ 1: 2, 1.5, 1, 0, 0, then 0 beyond, 0.002 at 0.999.
        expectCloseElements(
            runEstimatorBackward(ApproxSign(), x: x, g: g), [4, -1.5, 0.5, 0, 0, 0, 0, -0.25 * 2 * (1 - 0.999)],
            tolerance: 1e-6, "ApproxSign")
        // EDE: k·t·(1 − tanh²(t·x)) = k·t / cosh²(t·x).
        let edeX: [Float] = [0, 0.3, -1, 2, -5, 12, 60]
        let edeG: [Float] = [1, -2, 0.5, 1, 1, 1, 1]
        for (t, k): (Float, Float) in [(0.1, 10), (1, 1), (10, 1), (2.5, 1)] {
            var estimator = EDE()
            (estimator.t, estimator.k) = (t, k)
            let expected = edeX.indices.map { i -> Double in
                let c = cosh(Double(t) * Double(edeX[i]))
                return Double(k) * Double(t) / (c * c) * Double(edeG[i])
            }
            // The float product t·x carries a relative error of 6e-8, which the exponential scales by 2|t·x|.
            expectCloseElements(runEstimatorBackward(estimator, x: edeX, g: edeG), expected, tolerance: 2e-6, "EDE t = \(t)")
        }
        // By hand: at x = 0 r' = k·t, and with t = k = 1 at x = 0.3, 1 − tanh²(0.3) = 0.91513696.
        var unit = EDE()
        (unit.t, unit.k) = (1, 1)
        let hand = runEstimatorBackward(unit, x: [0, 0.3], g: [1, 1])
        #expect(hand[0] == 1)
        #expect(abs(hand[1] - 0.91513696) < 1e-6)
    }

    @Test("schedules: ReSTE's o and EDE's t, k at e = 0, E/2 and E − 1")
    func schedules() {
        let epochs = 10
        var reste = ReSTE(oEnd: 3)
        #expect(reste.o == 1)
        // o(e) = 1 + (o_end − 1)(1 − cos(π/2·e/E)).
        for (epoch, expected) in [(0, 1.0), (5, 1.5857864376269), (9, 2.6871310699195)] {
            reste.setEpoch(epoch, of: epochs)
            #expect(abs(Double(reste.o) - expected) < 1e-6, "o at epoch \(epoch): \(reste.o)")
        }
        reste.setEpoch(4, of: 8)
        #expect(abs(reste.o - 1.5857864) < 1e-6)
        #expect(abs(ReSTE.power(epoch: 5, of: 10, oEnd: 5) - (1 + 4 * (1 - 0.70710678))) < 1e-6)

        var ede = EDE()
        #expect(ede.t == 0.1 && ede.k == 10)
        // t = 0.1·10^(2·e/E), k = max(1/t, 1).
        for (epoch, t, k) in [(0, 0.1, 10.0), (5, 1.0, 1.0), (9, 6.3095734448, 1.0)] {
            ede.setEpoch(epoch, of: epochs)
            #expect(abs(Double(ede.t) - t) < 1e-6 * t, "t at epoch \(epoch): \(ede.t)")
            #expect(abs(Double(ede.k) - k) < 1e-5 * k, "k at epoch \(epoch): \(ede.k)")
        }
        ede.setEpoch(2, of: 10)  // t = 0.1·10^0.4 = 0.25118864, k = 3.9810717
        #expect(abs(ede.t - 0.25118864) < 1e-6 && abs(ede.k - 3.9810717) < 1e-5)

        // The others have no schedule.
        var ste: any SignEstimator = STE()
        ste.setEpoch(3, of: 10)
        #expect(runEstimatorBackward(ste, x: [0.5, 2], g: [1, 1]) == [1, 0])
    }

    @Test("accumulate adds to the gradient buffer, for every estimator, also in place")
    func accumulate() throws {
        let count = 20_000
        let x = (0..<count).map { -2 + 4 * Float($0) / Float(count) }
        let g = (0..<count).map { Float($0 % 5) - 2 }
        let initial = (0..<count).map { Float($0 % 7) * 0.25 }
        for name in signEstimatorNames {
            var estimator = try makeEstimator(named: name)
            estimator.setEpoch(4, of: 10)
            let fresh = runEstimatorBackward(estimator, x: x, g: g)
            let added = runEstimatorBackward(estimator, x: x, g: g, initial: initial)
            #expect(added == x.indices.map { initial[$0] + fresh[$0] }, "\(name)")
            // gradInput may be gradOutput.
            var inPlace = g
            x.withUnsafeBufferPointer { x in
                inPlace.withUnsafeMutableBufferPointer { b in
                    estimator.backward(
                        input: x.baseAddress!, gradOutput: b.baseAddress!, gradInput: b.baseAddress!, count: count,
                        accumulate: false)
                }
            }
            #expect(inPlace == fresh, "\(name) in place")
            // count 0 touches nothing.
            var untouched: [Float] = [42]
            untouched.withUnsafeMutableBufferPointer { b in
                estimator.backward(
                    input: b.baseAddress!, gradOutput: b.baseAddress!, gradInput: b.baseAddress!, count: 0,
                    accumulate: false)
            }
            #expect(untouched == [42])
        }
    }

    @Test("makeEstimator: every name, case-insensitive; unknown names and bad o_end are clear errors")
    func factory() throws {
        #expect(try makeEstimator(named: "reste").name == "reste")
        #expect(try makeEstimator(named: "ReSTE", oEnd: 4) is ReSTE)
        #expect((try makeEstimator(named: "reste", oEnd: 4) as? ReSTE)?.oEnd == 4)
        #expect(try makeEstimator(named: "ste") is STE)
        #expect(try makeEstimator(named: "identity") is IdentitySTE)
        #expect(try makeEstimator(named: "approx") is ApproxSign)
        #expect(try makeEstimator(named: "EDE") is EDE)
        for name in signEstimatorNames { #expect(try makeEstimator(named: name).name == name) }
        do {
            _ = try makeEstimator(named: "bireal")
            Issue.record("an unknown name was accepted")
        } catch let error as BNNError {
            #expect(error.message.contains("`bireal`"))
            #expect(error.message.contains("reste, ste, identity, approx, ede"))
        }
        expectBNNError(.estimator) { try makeEstimator(named: "reste", oEnd: 0.5) }
        expectBNNError(.estimator) { try makeEstimator(named: "reste", oEnd: .nan) }
    }
}

@Suite("Indicators")
struct IndicatorTests {
    @Test("estimating error and gradient stability on hand-computed layers")
    func handComputed() throws {
        // o = 2: |w|^(1/2) = 0.5, 2, 1, 0 → (|w|^(1/2) − 1)² = 0.25, 1, 0, 1 (sign(0) = +1) → ‖·‖ = 1.5;
        // second layer: √0.04 = 0.2 → 0.8. Total 2.3.
        let first = try Tensor(shape: [2, 2], data: [0.25, -4, 1, 0])
        let second = try Tensor(shape: [1], data: [-0.04])
        #expect(abs(Indicators.estimatingError(weights: [first, second], o: 2) - 2.3) < 1e-6)
        // o = 1 makes f_o the identity: ‖w − sign(w)‖ = √(0.5625 + 9 + 0 + 1) = 3.25.
        #expect(abs(Indicators.estimatingError(weights: [first], o: 1) - 3.25) < 1e-12)
        #expect(Indicators.estimatingError(weights: [first], o: 0).isNaN)

        // |g| = 1, 2, 3, 4: mean 2.5, squared deviations 5, unbiased variance 5/3; the second layer's |g| are equal.
        first.grad = try Tensor(shape: [2, 2], data: [1, -2, 3, -4])
        second.grad = nil
        let third = try Tensor(shape: [2], data: [0, 0])
        third.grad = try Tensor(shape: [2], data: [0.5, -0.5])
        #expect(abs(Indicators.gradientStability(weights: [first, second, third]) - 5.0 / 3.0) < 1e-12)
    }

    @Test("indicators over large layers match double references")
    func largeLayers() throws {
        var rng = GradCheckRandom(seed: 3)
        let weights = try [[16, 16, 3, 3], [32, 16, 3, 3], [5, 3, 3, 3]].map { try randomTensor($0, -0.3, 0.3, &rng) }
        for weight in weights { weight.grad = try randomTensor(weight.shape, -1e-3, 2e-3, &rng) }
        var error = 0.0
        var stability = 0.0
        for weight in weights {
            let w = weight.scalars.map(Double.init)
            error += w.map { pow(pow(abs($0), 1 / 3.0) - 1, 2) }.reduce(0, +).squareRoot()
            let g = weight.grad!.scalars.map { abs(Double($0)) }
            let mean = g.reduce(0, +) / Double(g.count)
            stability += g.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(g.count - 1)
        }
        #expect(abs(Indicators.estimatingError(weights: weights, o: 3) - error) < 1e-9 * error)
        #expect(abs(Indicators.gradientStability(weights: weights) - stability) < 1e-9 * stability)
    }
}
