// Multiplies two small ±1 matrices with the package's binary GEMM and checks the result against values
// worked out by hand. Run: cd Examples/SwiftConsumer && swift run
import BNN
import CKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Stops with a message naming the failed call.
func require(_ status: ck_status, _ call: String) {
    guard status == CK_OK else {
        print("\(call) failed: \(String(cString: ck_status_message(status)))")
        exit(1)
    }
}

/// Packs the rows of `rows` (each of length `k`) into sign bits, the layout `ck_bgemm` reads.
func packSigns(_ rows: [[Float]], k: Int) -> [UInt64] {
    let flat = rows.flatMap { $0 }
    precondition(flat.count == rows.count * k, "every row must have \(k) values")
    var bits = [UInt64](repeating: 0, count: rows.count * Int(ck_words(Int64(k))))
    require(ck_pack_signs(flat, Int64(rows.count), Int64(k), &bits), "ck_pack_signs")
    return bits
}

/// `a · bᵀ` over ±1 vectors of length `k`, computed by `ck_bgemm`.
func binaryProduct(_ a: [[Float]], _ b: [[Float]], k: Int) -> [Int32] {
    let aBits = packSigns(a, k: k)
    let bBits = packSigns(b, k: k)
    var out = [Int32](repeating: 0, count: a.count * b.count)
    require(ck_bgemm(aBits, bBits, Int64(a.count), Int64(b.count), Int64(k), &out), "ck_bgemm")
    return out
}

print("binary kernels: \(String(cString: ck_isa_name(ck_isa_active())))")
var failures = 0

// Four-element vectors; only signs matter, and 0 counts as +1.
//   a0 = (+ − + +), a1 = (− − + −);  b0 = (+ + + +), b1 = (+ − + +)
//   a0·b0 = 1−1+1+1 = 2, a0·b1 = 4, a1·b0 = −1−1+1−1 = −2, a1·b1 = −1+1+1−1 = 0
let small = binaryProduct(
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
let long = binaryProduct([ones], [firstThirty, lastSeventy], k: 100)
print("1×2 over k = 100: \(long)")
if long != [40, -40] {
    print("expected [40, -40]")
    failures += 1
}

// The Swift library reports failed kernel calls with this error type.
print("Swift API errors: \(String(reflecting: KernelError.self))")

if failures > 0 { exit(1) }
print("all results match")
