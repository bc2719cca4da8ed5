// Multiplies two small ±1 matrices with the package's binary GEMM, through the BNN Swift API, and checks
// the result against values worked out by hand. Run: cd Examples/SwiftConsumer && swift run
import BNN

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `a · bᵀ` over ±1 vectors of length `k` (the signs of the given values), computed by the binary GEMM.
func binaryProduct(_ a: [[Float]], _ b: [[Float]], k: Int) throws -> [Int32] {
    let aBits = try PackedBits(signsOf: a.flatMap { $0 }, rows: a.count, columns: k)
    let bBits = try PackedBits(signsOf: b.flatMap { $0 }, rows: b.count, columns: k)
    return try Kernels.bgemm(a: aBits, b: bBits)
}

do {
    print("binary kernels: \(Kernels.isa.name), threads: \(Kernels.threads)")
    var failures = 0

    // Four-element vectors; only signs matter, and 0 counts as +1.
    //   a0 = (+ − + +), a1 = (− − + −);  b0 = (+ + + +), b1 = (+ − + +)
    //   a0·b0 = 1−1+1+1 = 2, a0·b1 = 4, a1·b0 = −1−1+1−1 = −2, a1·b1 = −1+1+1−1 = 0
    let small = try binaryProduct(
        [[0.5, -2, 3, 0], [-1, -0.25, 7, -4]],
        [[1, 1, 1, 1], [2, -3, 0, 9]],
        k: 4)
    print("2×2 over k = 4: \(small)")
    if small != [2, 4, -2, 0] {
        print("expected [2, 4, -2, 0]")
        failures += 1
    }

    // Vectors of 100 elements span two 64-bit words. a is all +1; b0 has its first 30 elements −1,
    // b1 its last 70: a·b0 = 70 − 30 = 40, a·b1 = 30 − 70 = −40.
    let ones = [Float](repeating: 1, count: 100)
    let firstThirty = (0..<100).map { $0 < 30 ? Float(-1) : 1 }
    let lastSeventy = (0..<100).map { $0 < 30 ? Float(1) : -1 }
    let long = try binaryProduct([ones], [firstThirty, lastSeventy], k: 100)
    print("1×2 over k = 100: \(long)")
    if long != [40, -40] {
        print("expected [40, -40]")
        failures += 1
    }

    // A bad argument is an error naming it, not a crash.
    do {
        _ = try PackedBits(signsOf: [1, 2, 3], rows: 2, columns: 2)
        print("a 3-element array accepted as 2×2")
        failures += 1
    } catch {
        print("bad input rejected: \(error)")
    }

    if failures > 0 { exit(1) }
    print("ok")
} catch {
    print("error: \(error)")
    exit(1)
}
