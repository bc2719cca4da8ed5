import Foundation
import Testing
@testable import BNN

/// Little-endian bytes of a fixed-width integer, written out without the library.
private func littleEndianBytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    (0..<(T.bitWidth / 8)).map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) }
}

/// A file made by hand: length prefix, the given JSON text, then `data`.
private func handMadeFile(_ json: String, _ data: [UInt8]) -> Data {
    let header = Array(json.utf8)
    return Data(littleEndianBytes(UInt64(header.count)) + header + data)
}

/// Throws unless `body` throws a SafeTensorsError whose description contains every fragment.
private func expectSafeTensorsError(_ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation,
                            _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("expected an error containing \(fragments)", sourceLocation: sourceLocation)
    } catch let error as SafeTensorsError {
        for fragment in fragments {
            #expect(error.description.contains(fragment), "\(error.description)", sourceLocation: sourceLocation)
        }
    } catch {
        Issue.record("unexpected error type: \(error)", sourceLocation: sourceLocation)
    }
}

@Suite("SafeTensors")
struct SafeTensorsTests {
    typealias TensorData = SafeTensors.TensorData

    /// One tensor of every dtype with awkward values (extremes, negative zero, non-power-of-two shapes).
    static func everyDType() throws -> [String: TensorData] {
        [
            "f32": try TensorData([1.5, -0.0, .infinity, -3.25e-38, .greatestFiniteMagnitude, 7] as [Float], shape: [2, 3]),
            "f64": try TensorData([Double.pi, -1e300, .leastNonzeroMagnitude], shape: [3]),
            "i64": try TensorData([Int64.min, -1, 0, Int64.max, 42], shape: [5]),
            "i32": try TensorData([Int32.min, Int32.max, -7], shape: [3, 1]),
            "i16": try TensorData([Int16.min, 300], shape: [2]),
            "i8": try TensorData([Int8.min, -1, 127], shape: [3]),
            "u8": try TensorData((0...255).map(UInt8.init), shape: [4, 4, 16]),
            "u16": try TensorData([UInt16.max, 1], shape: [2]),
            "u32": try TensorData([UInt32.max, 1 << 31], shape: [1, 2]),
            "u64": try TensorData([UInt64.max, 0, 1 << 63], shape: [3]),
            "bool": try TensorData(bools: [true, false, false, true, true], shape: [5]),
            "f16 raw": try TensorData(dtype: .f16, shape: [2], bytes: [0x00, 0x3C, 0x00, 0xC0]),
            "bf16 raw": try TensorData(dtype: .bf16, shape: [1], bytes: [0x80, 0x3F]),
            "f8 raw": try TensorData(dtype: .f8e4m3, shape: [1, 1], bytes: [0x38]),
            "scalar": try TensorData([Float(9.5)], shape: []),
            "empty": try TensorData([Float](), shape: [0, 5]),
        ]
    }

    @Test("writing over a directory or a named pipe is refused before anything is written; the pipe stays")
    func writeRefusesNonRegularFiles() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("st-kinds-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let pipe = directory.appendingPathComponent("pipe")
        #expect(mkfifo(pipe.path, 0o600) == 0)
        let tensors = ["a": try SafeTensors.TensorData([Float(1)], shape: [1])]
        #expect { try SafeTensors.write(tensors, to: pipe) } throws: { "\($0)".contains("is not a regular file (it is a FIFO)") }
        #expect { try SafeTensors.write(tensors, to: directory) } throws: { "\($0)".contains("is a directory") }
        var info = stat()
        #expect(stat(pipe.path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFIFO, "the pipe is still a pipe")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["pipe"], "no temporary file left")
    }

    @Test("round trip of every dtype through a file, typed accessors give the values back")
    func roundTrip() throws {
        let directory = try DataFixtures.makeTemporaryDirectory("safetensors-roundtrip")
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("all.safetensors")
        let tensors = try Self.everyDType()
        let metadata = ["format": "pt", "epoch": "12", "quote \" backslash \\ newline \n tab \t": "ünïcödé ✓ \u{1}"]
        try SafeTensors.write(tensors, metadata: metadata, to: url)
        let file = try SafeTensors.read(url)
        #expect(file.tensors == tensors)
        #expect(file.metadata == metadata)
        #expect(Set(file.names) == Set(tensors.keys))
        #expect(try file.tensors["f32"]!.floats().map(\.bitPattern) == ([1.5, -0.0, .infinity, -3.25e-38, .greatestFiniteMagnitude, 7] as [Float]).map(\.bitPattern))
        #expect(try file.tensors["f64"]!.doubles() == [Double.pi, -1e300, .leastNonzeroMagnitude])
        #expect(try file.tensors["i64"]!.int64s() == [Int64.min, -1, 0, Int64.max, 42])
        #expect(try file.tensors["i32"]!.int32s() == [Int32.min, Int32.max, -7])
        #expect(try file.tensors["u8"]!.uint8s() == (0...255).map(UInt8.init))
        #expect(try file.tensors["u64"]!.uint64s() == [UInt64.max, 0, 1 << 63])
        #expect(try file.tensors["bool"]!.bools() == [true, false, false, true, true])
        #expect(try file.tensors["i16"]!.values(as: Int16.self) == [Int16.min, 300])
        #expect(try file.tensors["scalar"]!.floats() == [9.5])
        #expect(file.tensors["scalar"]!.shape == [] && file.tensors["empty"]!.elementCount == 0)
        // No temporary file is left beside the result.
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["all.safetensors"])
    }

    @Test("the bytes written are exactly the format: length, padded sorted header, aligned data")
    func exactBytes() throws {
        let tensors: [String: TensorData] = [
            "b": try TensorData([UInt8(1), 2, 3], shape: [3]),
            "a": try TensorData([Float(1), -2], shape: [1, 2]),
            "c": try TensorData([Int64(-1)], shape: []),
        ]
        let bytes = try SafeTensors.serialize(tensors, metadata: ["k": "v"])
        // Larger elements first (c: 8 bytes, a: 4, b: 1), names break ties; padded with spaces to 8.
        var json = #"{"__metadata__":{"k":"v"},"c":{"dtype":"I64","shape":[],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[1,2],"data_offsets":[8,16]},"b":{"dtype":"U8","shape":[3],"data_offsets":[16,19]}}"#
        while json.utf8.count % 8 != 0 { json += " " }
        let expected = littleEndianBytes(UInt64(json.utf8.count)) + Array(json.utf8)
            + littleEndianBytes(Int64(-1)) + littleEndianBytes(Float(1).bitPattern) + littleEndianBytes(Float(-2).bitPattern) + [1, 2, 3]
        #expect(bytes == expected)
        // Deterministic: the same tensors built in another order serialise identically.
        var reordered: [String: TensorData] = [:]
        for key in ["c", "b", "a"] { reordered[key] = tensors[key] }
        #expect(try SafeTensors.serialize(reordered, metadata: ["k": "v"]) == bytes)
        #expect(try SafeTensors.parse(Data(bytes)).names == ["c", "a", "b"])
    }

    @Test("a file made by another writer (unsorted, unpadded, escapes in names) is read")
    func foreignFile() throws {
        let json = #"{"w\u00e9ight\n":{"shape":[2],"dtype":"F32","data_offsets":[4,12]},"x":{"dtype":"I32","shape":[1],"data_offsets":[0,4]},"__metadata__":{}}"#
        let data = littleEndianBytes(Int32(-9)) + littleEndianBytes(Float(0.5).bitPattern) + littleEndianBytes(Float(-8).bitPattern)
        let file = try SafeTensors.parse(handMadeFile(json, data))
        #expect(try file.tensors["wéight\n"]!.floats() == [0.5, -8])
        #expect(try file.tensors["x"]!.int32s() == [-9])
        #expect(file.names == ["x", "wéight\n"])
        #expect(file.metadata.isEmpty)
    }

    @Test("every truncation of a valid file is an error, never a crash")
    func truncations() throws {
        let tensors: [String: TensorData] = [
            "weight": try TensorData([Float](repeating: 0.25, count: 6), shape: [2, 3]),
            "steps": try TensorData([Int64(3)], shape: []),
            "mask": try TensorData(bools: [true, false], shape: [2]),
        ]
        let bytes = try SafeTensors.serialize(tensors, metadata: ["a": "b"])
        #expect(try SafeTensors.parse(Data(bytes)).tensors == tensors)
        for length in 0..<bytes.count {
            #expect(throws: SafeTensorsError.self, "length \(length)") { try SafeTensors.parse(Data(bytes.prefix(length))) }
        }
        // One byte too many is a hole at the end of the buffer.
        expectSafeTensorsError(["1 trailing byte(s) belong to no tensor"]) { _ = try SafeTensors.parse(Data(bytes + [0])) }
    }

    @Test("random byte flips in the header give errors or a consistent file, never a crash")
    func headerByteFlips() throws {
        let tensors: [String: TensorData] = [
            "layer1.0.conv1.weight": try TensorData([Float](repeating: 1, count: 12), shape: [2, 2, 3]),
            "layer1.0.bn1.num_batches_tracked": try TensorData([Int64(7)], shape: []),
            "labels": try TensorData([UInt8](repeating: 3, count: 5), shape: [5]),
        ]
        let bytes = try SafeTensors.serialize(tensors, metadata: ["epoch": "1"])
        let headerEnd = 8 + Int(bytes[0]) + Int(bytes[1]) << 8
        var generator = Xoshiro256StarStar(seed: 2024)
        var errors = 0
        let trials = 3000
        for trial in 0..<trials {
            var corrupted = bytes
            let flips = 1 + Int(generator.next(below: 3))
            for _ in 0..<flips {
                let position = Int(generator.next(below: UInt64(headerEnd)))
                corrupted[position] ^= UInt8(1 + generator.next(below: 255))
            }
            do {
                let file = try SafeTensors.parse(Data(corrupted), file: "trial \(trial)")
                // Accepted only if what came out is self-consistent.
                for tensor in file.tensors.values {
                    #expect(tensor.bytes.count == tensor.elementCount * tensor.dtype.byteSize)
                }
                #expect(file.tensors.values.reduce(0) { $0 + $1.bytes.count } == bytes.count - headerEnd)
            } catch {
                #expect(error.description.contains("trial \(trial)"))
                errors += 1
            }
        }
        // Most flips break the JSON or the layout; some land in names or padding and stay valid.
        #expect(errors > trials / 2)
    }

    @Test("invalid layouts and headers are named precisely")
    func invalidHeaders() throws {
        let eight = [UInt8](repeating: 0, count: 8)
        func parse(_ json: String, _ data: [UInt8] = eight) throws { _ = try SafeTensors.parse(handMadeFile(json, data), file: "m.safetensors") }
        expectSafeTensorsError(["m.safetensors", "tensor \"b\"", "overlap tensor \"a\""]) {
            try parse(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}"#)
        }
        expectSafeTensorsError(["bytes 0..<4 belong to no tensor"]) {
            try parse(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#)
        }
        expectSafeTensorsError(["tensor \"a\"", "needs 12 bytes", "hold 8"]) {
            try parse(#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#)
        }
        expectSafeTensorsError(["tensor \"a\"", "reach past the 8-byte data buffer"]) {
            try parse(#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#)
        }
        expectSafeTensorsError(["tensor \"a\"", "appears twice"]) {
            try parse(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#)
        }
        expectSafeTensorsError(["tensor \"a\"", "unknown dtype \"F128\""]) {
            try parse(#"{"a":{"dtype":"F128","shape":[1],"data_offsets":[0,8]}}"#)
        }
        expectSafeTensorsError(["tensor \"a\"", "expected non-negative integers"]) {
            try parse(#"{"a":{"dtype":"U8","shape":[-8],"data_offsets":[0,8]}}"#)
        }
        expectSafeTensorsError(["tensor \"a\"", "expected non-negative integers"]) {
            try parse(#"{"a":{"dtype":"U8","shape":[8.0],"data_offsets":[0,8]}}"#)
        }
        expectSafeTensorsError(["tensor \"a\"", "too large"]) {
            try parse(#"{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#)
        }
        expectSafeTensorsError(["tensor \"a\"", "data_offsets"]) {
            try parse(#"{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,99999999999999999999999]}}"#)
        }
        expectSafeTensorsError(["tensor \"a\"", "ends before it begins"]) {
            try parse(#"{"a":{"dtype":"U8","shape":[0],"data_offsets":[8,0]}}"#)
        }
        expectSafeTensorsError(["tensor \"a\"", "missing"]) {
            try parse(#"{"a":{"dtype":"U8","shape":[8]}}"#)
        }
        expectSafeTensorsError(["tensor \"a\"", "unknown field \"offsets\""]) {
            try parse(#"{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8],"offsets":[0,8]}}"#)
        }
        expectSafeTensorsError(["__metadata__ entry \"n\" is a number"]) {
            try parse(#"{"__metadata__":{"n":3},"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}"#)
        }
        expectSafeTensorsError(["not valid JSON", "file offset"]) {
            try parse(#"{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},}"#)
        }
        expectSafeTensorsError(["does not start with '{'"]) { try parse(#"["a"]"#) }
        expectSafeTensorsError(["nesting deeper"]) {
            try parse("{\"a\":" + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000) + "}")
        }
        expectSafeTensorsError(["header length 1000 exceeds the 20 bytes"]) {
            _ = try SafeTensors.parse(Data(littleEndianBytes(UInt64(1000)) + [UInt8](repeating: 0x20, count: 20)))
        }
        expectSafeTensorsError(["header length 18446744073709551615"]) {
            _ = try SafeTensors.parse(Data([UInt8](repeating: 0xFF, count: 16)))
        }
        expectSafeTensorsError(["shorter than the 8-byte header length"]) { _ = try SafeTensors.parse(Data([1, 2, 3])) }
        // Valid: padding after the object, an empty file with no tensors.
        #expect(try SafeTensors.parse(handMadeFile(#"{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}      "#, eight)).names == ["a"])
        #expect(try SafeTensors.parse(handMadeFile("{}", [])).tensors.isEmpty)
    }

    @Test("typed access and construction check dtype and size")
    func typedAccess() throws {
        let tensor = try TensorData([Int64(1), 2], shape: [2])
        expectSafeTensorsError(["dtype is I64, not F32"]) { _ = try tensor.floats() }
        expectSafeTensorsError(["needs 12 bytes, found 8"]) { _ = try TensorData([Float(1), 2], shape: [3]) }
        expectSafeTensorsError(["needs 4 bytes, found 3"]) { _ = try TensorData(dtype: .i32, shape: [], bytes: [1, 2, 3]) }
        let badBool = try TensorData(dtype: .bool, shape: [3], bytes: [0, 1, 2])
        expectSafeTensorsError(["BOOL element 2 holds 2"]) { _ = try badBool.bools() }
    }

    @Test("writing: reserved name, missing directory, overwrite; never a partial file")
    func writing() throws {
        let directory = try DataFixtures.makeTemporaryDirectory("safetensors-write")
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("model.safetensors")
        let first = ["w": try TensorData([Float(1)], shape: [1])]
        let second = ["w": try TensorData([Float(2), 3], shape: [2]), "n": try TensorData([Int64(5)], shape: [])]
        try SafeTensors.write(first, to: url)
        try SafeTensors.write(second, to: url)
        #expect(try SafeTensors.read(url).tensors == second)
        #expect(try Data(contentsOf: url) == Data(try SafeTensors.serialize(second)))

        expectSafeTensorsError(["\"__metadata__\" is reserved"]) {
            try SafeTensors.write(["__metadata__": try TensorData([UInt8(1)], shape: [1])], to: url)
        }
        let elsewhere = directory.appendingPathComponent("missing/model.safetensors")
        expectSafeTensorsError(["missing/model.safetensors", "its directory \(directory.path)/missing does not exist"]) {
            try SafeTensors.write(first, to: elsewhere)
        }
        expectSafeTensorsError(["cannot be read", "its directory \(directory.path)/missing does not exist"]) {
            _ = try SafeTensors.read(elsewhere)
        }
        // The failed writes left the previous file intact and no temporary file behind.
        #expect(try SafeTensors.read(url).tensors == second)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["model.safetensors"])
    }

    // MARK: Hostile numbers

    /// Numbers that break size arithmetic: each side of 2^31, 2^32, 2^53, 2^62, 2^63 and 2^64, far beyond, negative,
    /// negative zero, and numbers that are not integers.
    static let hostileNumbers = [
        "0", "1", "3", "4", "8", "2147483647", "2147483648", "4294967295", "4294967296", "4294967297",
        "9007199254740992", "9007199254740993", "2305843009213693952", "4611686018427387904", "9223372036854775807",
        "9223372036854775808", "18446744073709551615", "18446744073709551616", "340282366920938463463374607431768211456",
        "-1", "-0", "-9223372036854775808", "-9223372036854775809", "1e3", "1.5", "0.0", "1E400", "4e-1",
    ]

    /// Parses `data`: an error must be a SafeTensorsError naming `label`, and an accepted file must be consistent
    /// (every tensor's bytes match its shape, and the element count fits in the file).
    static func expectErrorOrConsistent(_ data: Data, _ label: String, sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        do {
            let file = try SafeTensors.parse(data, file: label)
            for (name, tensor) in file.tensors {
                let count = tensor.elementCount
                #expect(tensor.bytes.count == count * tensor.dtype.byteSize, "\(label) \(name)", sourceLocation: sourceLocation)
                #expect(count <= data.count, "\(label) \(name)", sourceLocation: sourceLocation)
            }
            return true
        } catch {
            #expect(error.file == label, "\(error)", sourceLocation: sourceLocation)
            return false
        }
    }

    @Test("every hostile number in every numeric field of a header is an error or a consistent file, never a trap")
    func hostileNumbersInEachField() throws {
        // Two tensors: "a" F32 [2] at 0..<8, "b" U8 [4] at 8..<12. Each template puts one number in one place.
        let templates = [
            #"{"a":{"dtype":"F32","shape":[N],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}}"#,
            #"{"a":{"dtype":"F32","shape":[2,N],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}}"#,
            #"{"a":{"dtype":"F32","shape":[N,0],"data_offsets":[0,0]},"b":{"dtype":"U8","shape":[12],"data_offsets":[0,12]}}"#,
            #"{"a":{"dtype":"F32","shape":[0,N,N],"data_offsets":[0,0]},"b":{"dtype":"U8","shape":[12],"data_offsets":[0,12]}}"#,
            #"{"a":{"dtype":"F64","shape":[N,N,0],"data_offsets":[0,0]},"b":{"dtype":"U8","shape":[12],"data_offsets":[0,12]}}"#,
            #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[N,8]},"b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}}"#,
            #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,N]},"b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}}"#,
            #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[4],"data_offsets":[N,N]}}"#,
            #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[N],"data_offsets":[8,N]}}"#,
            #"{"__metadata__":{"n":N},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}}"#,
        ]
        let data = [UInt8](repeating: 0x3F, count: 12)
        var accepted = 0
        for (t, template) in templates.enumerated() {
            for number in Self.hostileNumbers {
                let json = template.replacingOccurrences(of: "N", with: number)
                if Self.expectErrorOrConsistent(handMadeFile(json, data), "template \(t) with \(number)") { accepted += 1 }
            }
        }
        // The numbers that make the templates valid again (2 in the first, 1 in the second, ...) are accepted.
        #expect(accepted > 0 && accepted < templates.count * Self.hostileNumbers.count)
    }

    @Test("generated headers with hostile numbers, shapes and lengths are errors or consistent files, never a trap")
    func generatedHostileHeaders() throws {
        var generator = Xoshiro256StarStar(seed: 31337)
        func pick<T>(_ values: [T]) -> T { values[Int(generator.next(below: UInt64(values.count)))] }
        func chance(_ oneIn: UInt64) -> Bool { generator.next(below: oneIn) == 0 }
        let dtypes = SafeTensors.DType.allCases
        var accepted = 0
        let trials = 3000
        for trial in 0..<trials {
            // A valid layout first (small shapes, consecutive offsets), then hostile numbers put into some fields:
            // about one trial in four keeps every field valid.
            let hostile = !chance(4)
            var entries: [String] = []
            var offset = 0
            for index in 0..<(1 + Int(generator.next(below: 3))) {
                let dtype = pick(dtypes)
                var shape = (0..<Int(generator.next(below: 4))).map { _ in String(generator.next(below: 4)) }
                let size = shape.reduce(dtype.byteSize) { $0 * Int($1)! }
                var begin = String(offset), end = String(offset + size)
                offset += size
                if hostile {
                    if !shape.isEmpty && chance(2) { shape[Int(generator.next(below: UInt64(shape.count)))] = pick(Self.hostileNumbers) }
                    if chance(4) { shape.append(pick(Self.hostileNumbers)) }
                    if chance(3) { begin = pick(Self.hostileNumbers) }
                    if chance(3) { end = pick(Self.hostileNumbers) }
                }
                entries.append(#""t\#(index)":{"dtype":"\#(dtype.rawValue)","shape":[\#(shape.joined(separator: ","))],"data_offsets":[\#(begin),\#(end)]}"#)
            }
            let header = Array(("{" + entries.joined(separator: ",") + "}").utf8)
            // The length prefix: right, or a hostile 64-bit value.
            let lengths: [UInt64] = [
                UInt64(header.count) + 1, UInt64(header.count) - 1, 0, 1, 1 << 31, 1 << 32,
                UInt64(SafeTensors.maximumHeaderSize), UInt64(SafeTensors.maximumHeaderSize) + 1, 1 << 62, 1 << 63,
                UInt64(Int64.max), UInt64.max,
            ]
            let length = hostile && chance(4) ? pick(lengths) : UInt64(header.count)
            let data = [UInt8](repeating: 0, count: hostile && chance(4) ? Int(generator.next(below: 64)) : offset)
            let file = Data(littleEndianBytes(length) + header + data)
            if Self.expectErrorOrConsistent(file, "trial \(trial)") { accepted += 1 }
        }
        // The generator makes both kinds, so both paths were taken.
        #expect(accepted > 0 && accepted < trials)
    }

    @Test("huge data_offsets, overflowing shapes and header lengths above the limit are named, with the limit")
    func hostileNumbersNamed() throws {
        let four = [UInt8](repeating: 0, count: 4)
        func parse(_ json: String, _ data: [UInt8] = four) throws { _ = try SafeTensors.parse(handMadeFile(json, data), file: "h.safetensors") }
        // These used to trap computing the file offset for the message.
        expectSafeTensorsError(["h.safetensors", "tensor \"a\"", "[0, 9223372036854775807] reach past the 4-byte data buffer"]) {
            try parse(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,9223372036854775807]}}"#)
        }
        expectSafeTensorsError(["tensor \"a\"", "reach past the 4-byte data buffer"]) {
            try parse(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[9223372036854775800,9223372036854775807]}}"#)
        }
        // No element, but dimensions whose product would overflow any later stride or slice computation.
        expectSafeTensorsError(["tensor \"a\"", "too large", "exceeds 9223372036854775807"]) {
            try parse(#"{"a":{"dtype":"F32","shape":[0,9223372036854775807,9223372036854775807],"data_offsets":[0,0]}}"#, [])
        }
        expectSafeTensorsError(["tensor \"a\"", "too large"]) {
            try parse(#"{"a":{"dtype":"U8","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}}"#, [])
        }
        expectSafeTensorsError(["tensor \"a\"", "too large"]) {
            try parse(#"{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,4]}}"#)
        }
        // A zero-element tensor with moderate dimensions is fine.
        #expect(try SafeTensors.parse(handMadeFile(#"{"a":{"dtype":"F32","shape":[0,1000000,1000000],"data_offsets":[0,0]}}"#, []))
            .tensors["a"]?.elementCount == 0)
        // Above the limit, the limit is what the message says, even when the file is also too short.
        let limit = SafeTensors.maximumHeaderSize
        for length in [UInt64(limit) + 1, 200_000_000, UInt64.max] {
            expectSafeTensorsError(["header length \(length) exceeds the limit of \(limit) bytes"]) {
                _ = try SafeTensors.parse(Data(littleEndianBytes(length) + Array("{}".utf8)))
            }
        }
    }

    @Test("reading and writing say what a path is: a directory, a FIFO, under a regular file; nothing is replaced")
    func fileKinds() throws {
        let directory = try DataFixtures.makeTemporaryDirectory("safetensors-kinds")
        defer { try? FileManager.default.removeItem(at: directory) }
        let tensors = ["w": try TensorData([Float(1)], shape: [1])]
        let fifo = directory.appendingPathComponent("fifo")
        #expect(mkfifo(fifo.path, 0o644) == 0)
        let plain = directory.appendingPathComponent("plain")
        try Data([1, 2, 3]).write(to: plain)

        // Reading: a FIFO is refused at once (opened without blocking), not waited on.
        expectSafeTensorsError(["\(directory.path): cannot be read: is a directory"]) { _ = try SafeTensors.read(directory) }
        expectSafeTensorsError(["cannot be read: is not a regular file (it is a FIFO)"]) { _ = try SafeTensors.read(fifo) }
        expectSafeTensorsError(["cannot be read: a parent, \(plain.path), is a regular file, not a directory"]) {
            _ = try SafeTensors.read(plain.appendingPathComponent("x.safetensors"))
        }
        expectSafeTensorsError(["cannot be read: does not exist"]) { _ = try SafeTensors.read(directory.appendingPathComponent("none")) }

        // Writing: refused before anything is created, so the FIFO stays a FIFO (as root, a rename would replace
        // even /dev/null with a regular file).
        expectSafeTensorsError(["\(directory.path): is a directory"]) { try SafeTensors.write(tensors, to: directory) }
        expectSafeTensorsError(["is not a regular file (it is a FIFO)"]) { try SafeTensors.write(tensors, to: fifo) }
        expectSafeTensorsError(["a parent, \(plain.path), is a regular file, not a directory"]) {
            try SafeTensors.write(tensors, to: plain.appendingPathComponent("x.safetensors"))
        }
        var status = stat()
        #expect(lstat(fifo.path, &status) == 0 && status.st_mode & S_IFMT == S_IFIFO)
        #expect(try Data(contentsOf: plain) == Data([1, 2, 3]))
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted() == ["fifo", "plain"])
    }

    @Test("NaN and infinities are found on the bits in every floating-point dtype, and only there")
    func nonFiniteElements() throws {
        #expect(try TensorData([1, -2, 3] as [Float], shape: [3]).firstNonFiniteElement() == nil)
        #expect(try TensorData([1, .nan, .infinity] as [Float], shape: [3]).firstNonFiniteElement()! == (1, "NaN"))
        #expect(try TensorData([1, 2, -.infinity] as [Double], shape: [3]).firstNonFiniteElement()! == (2, "-infinity"))
        #expect(try TensorData([.greatestFiniteMagnitude, .infinity] as [Double], shape: [2]).firstNonFiniteElement()! == (1, "+infinity"))
        // F16: 0x3C00 = 1, 0x7C00 = +inf, 0x7E00 = NaN; BF16: 0x3F80 = 1, 0xFF80 = −inf.
        #expect(try TensorData(dtype: .f16, shape: [3], bytes: [0x00, 0x3C, 0x00, 0x7C, 0x00, 0x7E]).firstNonFiniteElement()! == (1, "+infinity"))
        #expect(try TensorData(dtype: .f16, shape: [2], bytes: [0x00, 0x3C, 0x00, 0x7E]).firstNonFiniteElement()! == (1, "NaN"))
        #expect(try TensorData(dtype: .bf16, shape: [2], bytes: [0x80, 0x3F, 0x80, 0xFF]).firstNonFiniteElement()! == (1, "-infinity"))
        // F8_E5M2 has infinities (0x7C); F8_E4M3 has only NaN (0x7F), and 0x7E is its largest normal number, 448.
        #expect(try TensorData(dtype: .f8e5m2, shape: [2], bytes: [0x3C, 0x7C]).firstNonFiniteElement()! == (1, "+infinity"))
        #expect(try TensorData(dtype: .f8e4m3, shape: [2], bytes: [0x7E, 0xFE]).firstNonFiniteElement() == nil)
        #expect(try TensorData(dtype: .f8e4m3, shape: [2], bytes: [0x7E, 0xFF]).firstNonFiniteElement()! == (1, "NaN"))
        // Integer bit patterns that would be NaN as floats are integers.
        #expect(try TensorData([Int32(bitPattern: 0x7FC0_0000)], shape: [1]).firstNonFiniteElement() == nil)

        let weights = [
            "b.weight": try TensorData([Float](repeating: 1, count: 24).enumerated().map { $0.offset == 17 ? .nan : $0.element }, shape: [2, 3, 4]),
            "a.bias": try TensorData([Float(0), 1], shape: [2]),
            "c.running_var": try TensorData([Float(1), -.infinity], shape: [2]),
            "n": try TensorData([Int64.max], shape: []),
        ]
        let found = try #require(ModelWeights.firstNonFiniteElement(in: weights))
        #expect(found == NonFiniteElement(tensor: "b.weight", index: 17, position: [1, 1, 1], shape: [2, 3, 4], value: "NaN"))
        #expect(found.description == #"tensor "b.weight" holds NaN at element 17 (index [1, 1, 1] of shape [2, 3, 4])"#)
        #expect(ModelWeights.firstNonFiniteElement(in: weights.filter { $0.key != "b.weight" })?.description
            == #"tensor "c.running_var" holds -infinity at element 1"#)
        #expect(ModelWeights.firstNonFiniteElement(in: ["a.bias": weights["a.bias"]!]) == nil)
    }
}
