@testable import BNN
import BNNRuntime
import Foundation
import Testing

/// The C reader of packed models (Sources/BNNRuntime): what Swift writes it reads (every registered network,
/// version 1 and 2), and crafted files are refused with a message naming what is wrong, through the Swift
/// loader and the C API alike, never with a crash.
@Suite("C model reader", .serialized)
struct ModelFileTests {
    static let seedDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fuzz/seeds")

    static func temporaryURL(_ stem: String) -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("\(stem)-\(UUID().uuidString).bnn")
    }

    static func randomImages(_ count: Int, _ shape: [Int], seed: UInt64) -> [Float] {
        var generator = Xoshiro256StarStar(seed: seed)
        return (0..<(count * shape.reduce(1, *))).map { _ in Float(generator.next(below: 2001)) / 1000 - 1 }
    }

    /// Logits through the C API from a file.
    static func cLogits(_ url: URL, images: [Float], count: Int) throws -> [Float] {
        var handle: OpaquePointer?
        let status = bnn_model_open(url.path, &handle)
        try #require(status == Int32(BNN_OK), "\(String(cString: bnn_last_error()))")
        defer { bnn_model_close(handle) }
        var logits = [Float](repeating: .nan, count: count * Int(bnn_model_classes(handle)))
        try #require(bnn_model_run(handle, images, Int64(count), &logits) == Int32(BNN_OK))
        return logits
    }

    @Test("every registered network, packed untrained, is written by Swift, read by C, and gives the same logits",
          arguments: NetworkRegistry.names)
    func registeredNetworksRoundTrip(network: String) throws {
        let packed = try PackedModel.pack(NetworkRegistry.named(network)(NetworkOptions()), inputShape: [32, 32, 3], name: network)
        let url = Self.temporaryURL("roundtrip-\(network)")
        defer { try? FileManager.default.removeItem(at: url) }
        try packed.write(to: url)
        let loaded = try PackedModel.load(contentsOf: url)
        #expect(loaded == packed)
        #expect(loaded.graph.variant == "1w1a" && loaded.graph.model == network)
        let images = Self.randomImages(2, [32, 32, 3], seed: 3)
        let expected = try PackedEngine(model: packed).logits(images: images, count: 2)
        #expect(try PackedEngine(model: loaded).logits(images: images, count: 2) == expected)
        #expect(try Self.cLogits(url, images: images, count: 2) == expected)
    }

    /// A small network with most kinds of packed step (float and binary convolutions, a max-pool, an option-A
    /// shortcut, an average pool with a batch norm after it, the global pool and the classifier) on 16×16 images.
    static func smallNetwork(seed: UInt64) throws -> Module {
        var generator = Xoshiro256StarStar(seed: seed)
        return try Sequential(
            Conv2d(inputChannels: 3, outputChannels: 16, kernelSize: 3, padding: 1, bias: true, generator: &generator),
            ReLU(), BatchNorm2d(channels: 16),
            BinaryConv2d(inputChannels: 16, outputChannels: 16, kernelSize: 3, padding: 1, estimator: STE(),
                         generator: &generator),
            ReLU(), BatchNorm2d(channels: 16),
            MaxPool2d(kernelSize: 2),
            Residual(
                Sequential(
                    BinaryConv2d(inputChannels: 16, outputChannels: 32, kernelSize: 3, stride: 2, padding: 1,
                                 estimator: STE(), generator: &generator),
                    BatchNorm2d(channels: 32)),
                shortcut: OptionAShortcut(channelPadding: 8, stride: 2)),
            AvgPool2d(kernelSize: 2), BatchNorm2d(channels: 32),
            GlobalAvgPool2d(),
            Linear(inputFeatures: 32, outputFeatures: 10, generator: &generator))
    }

    /// The small network's file bytes with `version` and, for version 1, no `variant` (as the version-1 writer
    /// wrote them).
    static func smallModelFile(version: String) throws -> (bytes: [UInt8], packed: PackedModel) {
        let packed = try PackedModel.pack(smallNetwork(seed: 4), inputShape: [16, 16, 3], name: "small")
        var graph = packed.graph
        if version == "1" { graph.variant = nil }
        let graphText = try PackedModel.graphJSON(graph)
        let bytes = try SafeTensors.serialize(packed.tensors, metadata: [
            "format": PackedModel.format, "version": version, "graph": graphText,
            "checksum": PackedModel.checksum(graph: graphText, tensors: packed.tensors),
        ])
        return (bytes, packed)
    }

    @Test("a version-1 file (no variant) still loads and runs as its version-2 twin")
    func versionOneLoads() throws {
        let (v1, packed) = try Self.smallModelFile(version: "1")
        #expect(!String(decoding: v1, as: UTF8.self).contains("variant"))
        let loaded = try PackedModel.parse(Data(v1), path: "v1.bnn")
        #expect(loaded.graph.variant == nil)
        #expect(loaded.graph.layers == packed.graph.layers && loaded.tensors == packed.tensors)
        let images = Self.randomImages(3, [16, 16, 3], seed: 8)
        #expect(try PackedEngine(model: loaded).logits(images: images, count: 3)
            == PackedEngine(model: packed).logits(images: images, count: 3))
        let ops = Set(packed.graph.layers.map(\.op))
        #expect(ops.isSuperset(of: [.conv, .bconv, .shortcut, .avgpool, .globalAvgPool, .linear]), "\(ops)")
    }

    @Test("the committed fuzz seeds are read: the models load and run, the broken ones are refused")
    func fuzzSeeds() throws {
        // BNN_WRITE_FUZZ_SEEDS=1 swift test --filter fuzzSeeds rewrites the seeds from this code.
        if ProcessInfo.processInfo.environment["BNN_WRITE_FUZZ_SEEDS"] == "1" {
            try FileManager.default.createDirectory(at: Self.seedDirectory, withIntermediateDirectories: true)
            for version in ["1", "2"] {
                try Data(Self.smallModelFile(version: version).bytes)
                    .write(to: Self.seedDirectory.appendingPathComponent("small-v\(version).bnn"))
            }
            for (name, bytes) in Self.craftedSeeds {
                try Data(bytes).write(to: Self.seedDirectory.appendingPathComponent(name))
            }
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.seedDirectory.path).sorted()
        #expect(files.contains("small-v1.bnn") && files.contains("small-v2.bnn"), "\(files)")
        for file in files {
            let url = Self.seedDirectory.appendingPathComponent(file)
            if file.hasSuffix(".bnn") {
                let model = try PackedModel.load(contentsOf: url)
                _ = try PackedEngine(model: model).logits(images: Self.randomImages(1, model.graph.input, seed: 1), count: 1)
            } else {
                #expect("\(file)") { try PackedModel.load(contentsOf: url) } throws: { ($0 as? BNNError)?.kind == .packedModel }
            }
        }
    }

    /// Small broken files that start the fuzzer near the structure's edges.
    static let craftedSeeds: [(String, [UInt8])] = [
        ("empty-header.safetensors", handMade("{}", [])),
        ("metadata-only.safetensors",
         handMade(#"{"__metadata__":{"format":"swift-bnn-packed","version":"2","graph":"{}","checksum":"x"}}"#, [])),
        ("nested.safetensors", handMade("{\"a\":" + String(repeating: "[", count: 70) + String(repeating: "]", count: 70) + "}", [])),
    ]

    /// An 8-byte little-endian length, the header, the data.
    static func handMade(_ json: String, _ data: [UInt8]) -> [UInt8] { handMade(Array(json.utf8), data) }

    static func handMade(_ json: [UInt8], _ data: [UInt8]) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: UInt64(json.count) >> (8 * UInt64($0))) } + json + data
    }

    // MARK: Crafted files

    /// A valid one-layer model (a linear classifier on 2×2×3 images), its graph as text to edit.
    static let baseGraph = #"{"classes":2,"input":[2,2,3],"layers":[{"channels":12,"height":1,"input":0,"name":"fc","op":"linear","out_channels":2,"output":1,"width":1}],"model":"tiny","variant":"1w1a"}"#

    static func baseTensors() throws -> [String: SafeTensors.TensorData] {
        ["fc.weight": try .init([Float](repeating: 0.5, count: 24), shape: [2, 12]),
         "fc.bias": try .init([Float(1), -1], shape: [2])]
    }

    /// A file with the graph text and tensors given and a correct checksum (so the checks behind it are reached).
    static func modelFile(graph: String, tensors: [String: SafeTensors.TensorData]? = nil,
                          metadata: [String: String] = [:]) throws -> [UInt8] {
        let tensors = try tensors ?? baseTensors()
        var entries = ["format": PackedModel.format, "version": "2", "graph": graph,
                       "checksum": PackedModel.checksum(graph: graph, tensors: tensors)]
        entries.merge(metadata) { $1 }
        return try SafeTensors.serialize(tensors, metadata: entries)
    }

    static func edited(_ replacements: [(String, String)]) -> String {
        replacements.reduce(baseGraph) { text, pair in
            precondition(text.contains(pair.0), "\(pair.0) not in the graph")
            return text.replacingOccurrences(of: pair.0, with: pair.1)
        }
    }

    /// Refused by PackedModel.parse and by bnn_model_open, each message holding every fragment.
    static func expectRefused(_ name: String, _ bytes: [UInt8], _ fragments: [String],
                              sourceLocation: SourceLocation = #_sourceLocation) throws {
        // scripts/test sets BNN_CRAFTED_DIR and gives the files to scripts/fuzz as seeds: each then runs once
        // through the C reader built with the address and undefined-behaviour sanitizers.
        if let directory = ProcessInfo.processInfo.environment["BNN_CRAFTED_DIR"], !directory.isEmpty {
            let stem = String(name.map { $0.isLetter || $0.isNumber ? $0 : "-" })
            try Data(bytes).write(to: URL(fileURLWithPath: directory).appendingPathComponent("crafted-\(stem).bnn"))
        }
        // The reader's messages name the file; the engine's (wiring) name the layer or the graph.
        do {
            let model = try PackedModel.parse(Data(bytes), path: "crafted.bnn")
            do {
                _ = try PackedEngine(model: model)
                Issue.record("\(name): accepted by PackedModel.parse and PackedEngine", sourceLocation: sourceLocation)
            } catch let error as BNNError {
                for fragment in fragments {
                    #expect(error.message.contains(fragment), "\(name): \(error.message)", sourceLocation: sourceLocation)
                }
            }
        } catch let error as BNNError {
            for fragment in fragments + ["crafted.bnn"] {
                #expect(error.message.contains(fragment), "\(name): \(error.message)", sourceLocation: sourceLocation)
            }
        }
        let url = temporaryURL("crafted")
        defer { try? FileManager.default.removeItem(at: url) }
        try Data(bytes).write(to: url)
        var handle: OpaquePointer? = OpaquePointer(bitPattern: 8)
        let status = bnn_model_open(url.path, &handle)
        let message = String(cString: bnn_last_error())
        #expect(status == Int32(BNN_INVALID_MODEL), "\(name): status \(status), \(message)", sourceLocation: sourceLocation)
        #expect(handle == nil, sourceLocation: sourceLocation)
        for fragment in fragments + [url.path] {
            #expect(message.contains(fragment), "\(name) (C API): \(message)", sourceLocation: sourceLocation)
        }
    }

    @Test("the crafted base model is valid")
    func baseIsValid() throws {
        let model = try PackedModel.parse(Data(Self.modelFile(graph: Self.baseGraph)))
        let logits = try PackedEngine(model: model).logits(images: [Float](repeating: 1, count: 12), count: 1)
        #expect(logits == [7, 5])
        // Keys in any order, whitespace, null for an absent optional key: the same model.
        let reordered = #"{ "layers" : [ {"op":"linear","name":"fc","width":1,"height":1,"channels":12,"out_channels":2,"input":0,"output":1,"residual":null,"kernel":null} ], "model":"tiny", "input":[2, 2, 3], "classes":2, "variant":"1w1a" }"#
        #expect(try PackedModel.parse(Data(Self.modelFile(graph: reordered))).graph == model.graph)
    }

    @Test("crafted safetensors headers: lengths, shapes, offsets, names, encodings, nesting")
    func craftedHeaders() throws {
        let eight = [UInt8](repeating: 0, count: 8)
        try Self.expectRefused("huge header length", [255, 255, 255, 255, 255, 255, 255, 127] + eight,
                               ["header length 9223372036854775807 exceeds the limit of 100000000 bytes"])
        try Self.expectRefused("header length past the end", [100, 0, 0, 0, 0, 0, 0, 0] + eight,
                               ["header length 100 exceeds the 8 bytes that follow it"])
        try Self.expectRefused("header length 2^64 - 1", [UInt8](repeating: 255, count: 16), ["header length 18446744073709551615"])
        try Self.expectRefused("header length 1", Self.handMade("{", []) , ["too small for a JSON object"])
        try Self.expectRefused("shorter than 8 bytes", [1, 2, 3], ["shorter than the 8-byte header length"])
        try Self.expectRefused("huge shape", Self.handMade(#"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#, eight),
                               ["tensor \"a\"", "shape [4294967296, 4294967296] of F32 is too large"])
        try Self.expectRefused("shape product overflowing int64",
                               Self.handMade(#"{"a":{"dtype":"U8","shape":[3037000500,3037000500,2],"data_offsets":[0,8]}}"#, eight),
                               ["tensor \"a\"", "is too large"])
        try Self.expectRefused("no element, other dimensions overflowing",
                               Self.handMade(#"{"a":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}}"#, []),
                               ["tensor \"a\"", "non-zero dimensions times 4 byte(s) exceeds 9223372036854775807"])
        try Self.expectRefused("dimension beyond int64", Self.handMade(#"{"a":{"dtype":"U8","shape":[99999999999999999999],"data_offsets":[0,8]}}"#, eight),
                               ["tensor \"a\"", "holds 99999999999999999999, expected non-negative integers"])
        try Self.expectRefused("negative dimension", Self.handMade(#"{"a":{"dtype":"U8","shape":[-8],"data_offsets":[0,8]}}"#, eight),
                               ["expected non-negative integers"])
        try Self.expectRefused("offsets past the data", Self.handMade(#"{"a":{"dtype":"U8","shape":[16],"data_offsets":[0,16]}}"#, eight),
                               ["reach past the 8-byte data buffer"])
        try Self.expectRefused("offset beyond int64", Self.handMade(#"{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,18446744073709551616]}}"#, eight),
                               ["data_offsets is [0,18446744073709551616], expected [begin, end]"])
        try Self.expectRefused("duplicate tensor", Self.handMade(#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}"#, eight),
                               ["tensor \"a\"", "appears twice"])
        try Self.expectRefused("duplicate field", Self.handMade(#"{"a":{"dtype":"U8","dtype":"U8","shape":[8],"data_offsets":[0,8]}}"#, eight),
                               ["field \"dtype\" appears twice"])
        try Self.expectRefused("duplicate metadata key", Self.handMade(#"{"__metadata__":{"graph":"a","graph":"b"}}"#, []),
                               ["__metadata__ key \"graph\" appears twice"])
        try Self.expectRefused("unknown dtype", Self.handMade(#"{"a":{"dtype":"F128","shape":[1],"data_offsets":[0,8]}}"#, eight),
                               ["unknown dtype \"F128\""])
        var invalidName = Array(#"{"a?":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}"#.utf8)
        invalidName[3] = 0xFF
        try Self.expectRefused("non-UTF-8 name", Self.handMade(invalidName, eight), ["string is not valid UTF-8"])
        var overlong = Array(#"{"__metadata__":{"format":"??"}}"#.utf8)
        overlong[27] = 0xC0
        overlong[28] = 0xAF  // an overlong '/'
        try Self.expectRefused("overlong UTF-8", Self.handMade(overlong, []), ["not valid UTF-8"])
        try Self.expectRefused("lone surrogate escape", Self.handMade(#"{"__metadata__":{"format":"\ud800"}}"#, []),
                               ["high surrogate without a low surrogate"])
        try Self.expectRefused("raw control byte", Self.handMade("{\"__metadata__\":{\"format\":\"a\u{1}\"}}", []),
                               ["raw control byte 0x1 inside a string"])
        try Self.expectRefused("deep nesting", Self.handMade("{\"a\":" + String(repeating: "[", count: 100_000) + "}", []),
                               ["nesting deeper than 64 levels"])
        try Self.expectRefused("trailing comma", Self.handMade(#"{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},}"#, eight),
                               ["not valid JSON at file offset"])
        try Self.expectRefused("not an object", Self.handMade("[1]", []), ["does not start with '{'"])
    }

    @Test("NaN or an infinity in any float tensor of a packed model is refused, naming the tensor and element")
    func nonFiniteValues() throws {
        for (value, word) in [(Float.nan, "NaN"), (.infinity, "+infinity"), (-.infinity, "-infinity")] {
            var weight = [Float](repeating: 0.5, count: 24)
            weight[13] = value
            try Self.expectRefused("fc.weight \(word)", Self.modelFile(graph: Self.baseGraph, tensors: [
                "fc.weight": .init(weight, shape: [2, 12]), "fc.bias": .init([Float(1), -1], shape: [2])]),
                ["tensor \"fc.weight\" holds \(word) at element 13"])
            try Self.expectRefused("fc.bias \(word)", Self.modelFile(graph: Self.baseGraph, tensors: [
                "fc.weight": .init([Float](repeating: 0.5, count: 24), shape: [2, 12]), "fc.bias": .init([Float(1), value], shape: [2])]),
                ["tensor \"fc.bias\" holds \(word) at element 1"])
        }
        // The largest finite values are values.
        let extremes = try Self.modelFile(graph: Self.baseGraph, tensors: [
            "fc.weight": .init([Float](repeating: .greatestFiniteMagnitude, count: 24), shape: [2, 12]),
            "fc.bias": .init([-Float.greatestFiniteMagnitude, .leastNonzeroMagnitude], shape: [2])])
        #expect(throws: Never.self) { try PackedModel.parse(Data(extremes)) }
    }

    @Test("crafted metadata and graphs: format, version, checksum, keys, types, numbers, nesting")
    func craftedGraphs() throws {
        try Self.expectRefused("a state dict", Self.handMade(#"{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}"#, [UInt8](repeating: 0, count: 8)),
                               ["metadata `format` is missing", "bnn export"])
        try Self.expectRefused("version 3", Self.modelFile(graph: Self.baseGraph, metadata: ["version": "3"]),
                               ["packed model version 3 is not supported (this build reads versions 1 and 2)"])
        try Self.expectRefused("no graph", Self.handMade(#"{"__metadata__":{"format":"swift-bnn-packed","version":"2"}}"#, []),
                               ["metadata has no `graph`"])
        var corrupted = try Self.modelFile(graph: Self.baseGraph)
        corrupted[corrupted.count - 1] ^= 1
        try Self.expectRefused("a flipped data bit", corrupted, ["checksum mismatch", "the file is corrupted"])
        let cases: [(String, String, [String])] = [
            ("graph not JSON", "{\"classes\":2,", ["not a valid graph: not valid JSON at offset"]),
            ("graph nested deeply", "{\"model\":" + String(repeating: "[", count: 65) + String(repeating: "]", count: 65) + "}",
             ["nesting deeper than 64 levels"]),
            ("graph not an object", "[]", ["the graph is an array, expected an object"]),
            ("unknown op", Self.edited([("\"linear\"", "\"conv3d\"")]),
             ["layers[0]: unknown op \"conv3d\" (known: conv, bconv, shortcut, bmaxpool, maxpool, avgpool, affine, global_avgpool, linear)"]),
            ("missing op", Self.edited([("\"op\":\"linear\",", "")]), ["layers[0]: key \"op\" is missing"]),
            ("missing classes", Self.edited([("\"classes\":2,", "")]), ["graph: key \"classes\" is missing"]),
            ("duplicate key", Self.edited([("\"classes\":2,", "\"classes\":2,\"classes\":3,")]),
             ["graph: key \"classes\" appears twice"]),
            ("duplicate layer key", Self.edited([("\"width\":1", "\"width\":1,\"width\":1")]),
             ["layers[0]: key \"width\" appears twice"]),
            ("unknown key", Self.edited([("\"model\"", "\"extra\":1,\"model\"")]), ["graph: unknown key \"extra\""]),
            ("classes as text", Self.edited([("\"classes\":2", "\"classes\":\"2\"")]),
             ["graph: key \"classes\" is a string, expected an integer"]),
            ("classes 1e400", Self.edited([("\"classes\":2", "\"classes\":1e400")]),
             ["graph: key \"classes\" is 1e400, expected an integer"]),
            ("classes 2.0", Self.edited([("\"classes\":2", "\"classes\":2.0")]), ["is 2.0, expected an integer"]),
            ("height beyond int64", Self.edited([("\"height\":1", "\"height\":99999999999999999999")]),
             ["layers[0]: key \"height\" is 99999999999999999999, outside the 64-bit integers"]),
            ("relu as a number", Self.edited([("\"width\":1", "\"width\":1,\"relu_after\":1")]),
             ["key \"relu_after\" is a number, expected a boolean"]),
            ("input of two", Self.edited([("[2,2,3]", "[2,6]")]), ["graph `input` must be [height, width, channels], got [2,6]"]),
            ("input zero", Self.edited([("[2,2,3]", "[0,2,3]")]), ["graph `input` must be"]),
            ("no class", Self.edited([("\"classes\":2", "\"classes\":0")]), ["graph needs at least one layer and one class"]),
            ("no layer", #"{"classes":2,"input":[2,2,3],"layers":[],"model":"tiny"}"#, ["graph needs at least one layer"]),
            ("negative buffer", Self.edited([("\"input\":0", "\"input\":-1")]),
             ["layer \"fc\": buffer `input` = -1 is outside 0...63"]),
            ("residual at the 64-bit minimum", Self.edited([("\"output\":1", "\"output\":1,\"residual\":-9223372036854775808")]),
             ["buffer `residual` = -9223372036854775808 is outside 0...63"]),
            ("buffer 64", Self.edited([("\"output\":1", "\"output\":64")]), ["buffer `output` = 64 is outside 0...63"]),
            ("buffer 2^40", Self.edited([("\"output\":1", "\"output\":1099511627776")]), ["buffer `output` = 1099511627776"]),
            ("height 0", Self.edited([("\"height\":1", "\"height\":0")]), ["layer \"fc\" (linear): `height` = 0 is outside 1...16777216"]),
            ("huge channels", Self.edited([("\"channels\":12", "\"channels\":1099511627776")]),
             ["`channels` = 1099511627776 is outside 1...16777216"]),
            ("huge image", Self.edited([("\"height\":1", "\"height\":16777216"), ("\"width\":1", "\"width\":16777216")]),
             ["exceed the limit of 67108864 values per image"]),
            ("layer name with a newline", Self.edited([("\"name\":\"fc\"", "\"name\":\"f\\nc\"")]),
             ["layer \"f\\nc\" (linear) needs tensor \"f\\nc.weight\", which is missing"]),
            ("weight of another dtype", Self.edited([("\"channels\":12", "\"channels\":6")]),
             ["tensor \"fc.weight\" is F32 [2, 12], expected F32 [2, 6] for layer \"fc\""]),
            ("two layers with one name", Self.edited([("}],\"model\"", "},{\"channels\":2,\"height\":1,\"input\":1,\"name\":\"fc\",\"op\":\"linear\",\"out_channels\":2,\"output\":2,\"width\":1}],\"model\"")]),
             ["two layers are named \"fc\""]),
        ]
        for (name, graph, fragments) in cases {
            try Self.expectRefused(name, Self.modelFile(graph: graph), fragments)
        }
        var extra = try Self.baseTensors()
        extra["zz.weight"] = try .init([Float(1)], shape: [1])
        try Self.expectRefused("a tensor of no layer", Self.modelFile(graph: Self.baseGraph, tensors: extra),
                               ["tensor \"zz.weight\" belongs to no layer of the graph"])
        var doubles = try Self.baseTensors()
        doubles["fc.bias"] = try .init([Double(1), -1], shape: [2])
        try Self.expectRefused("a bias of doubles", Self.modelFile(graph: Self.baseGraph, tensors: doubles),
                               ["tensor \"fc.bias\" is F64 [2], expected F32 [2] for layer \"fc\""])
        // A binary convolution whose weight shape overflows 64 bits before any tensor is compared.
        let overflow = #"{"classes":2,"input":[1,1,1],"layers":[{"channels":1,"height":1,"input":0,"kernel":16777216,"name":"b","op":"bconv","out_channels":16777216,"output":1,"width":1}],"model":"tiny"}"#
        try Self.expectRefused("bits shape overflowing", Self.modelFile(graph: overflow, tensors: [:]),
                               ["layer \"b\" (bconv): the shape of its tensor \"bits\" overflows 64-bit sizes"])
    }

    @Test("crafted wiring: buffers nothing wrote, windows that do not fit, sizes that disagree with the graph")
    func craftedWiring() throws {
        try Self.expectRefused("unwritten buffer", Self.modelFile(graph: Self.edited([("\"input\":0", "\"input\":5")])),
                               ["layer \"fc\" (linear)", "its buffers must be written by earlier layers"])
        try Self.expectRefused("classes disagree", Self.modelFile(graph: Self.edited([("\"classes\":2", "\"classes\":3")])),
                               ["graph: the layers read 12 floats per image and produce 2, but the graph declares input [2, 2, 3] (12) and 3 classes"])
        let pool = #"{"classes":12,"input":[2,2,3],"layers":[{"channels":3,"height":2,"input":0,"kernel":5,"name":"p","op":"maxpool","out_channels":3,"output":1,"stride":1,"width":2}],"model":"tiny"}"#
        try Self.expectRefused("window larger than the image", Self.modelFile(graph: pool, tensors: [:]),
                               ["layer \"p\" (maxpool)", "window must fit"])
    }
}
