import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import BNN

/// A fresh empty directory under the temporary directory, removed by the caller.
func makeTrainingScratchDirectory(_ name: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("bnn-\(name)-\(ProcessInfo.processInfo.processIdentifier)-\(UInt64.random(in: 0...UInt64.max))")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

private func record(_ epoch: Int, loss: Double = 2.0, indicators: Bool = true) -> EpochRecord {
    EpochRecord(
        epoch: epoch, learningRate: 0.1 / Double(epoch), o: 1 + Double(epoch) / 7, trainLoss: loss,
        trainAccuracy: 0.1 * Double(epoch), validationLoss: loss + 0.25, validationAccuracy: 0.05 * Double(epoch),
        estimatingError: indicators ? 40 - Double(epoch) : nil, gradientStability: indicators ? 3e-9 * Double(epoch) : nil,
        estimatingErrorMean: indicators ? 41 - Double(epoch) : nil,
        gradientStabilityMean: indicators ? 2e-9 * Double(epoch) : nil,
        seconds: 12.5, imagesPerSecond: 640.25, steps: 8, images: 2000)
}

@Suite("Training: log.jsonl")
struct TrainingLogTests {
    @Test("a line holds every required key, in order, and reads back bit for bit")
    func lineRoundTrip() throws {
        // Values whose shortest decimal form matters: a sum with rounding error, a subnormal, a huge value.
        var sample = record(3, loss: 0.1 + 0.2)
        sample.trainAccuracy = Double(Float(1) / 3)
        sample.gradientStability = Double.leastNonzeroMagnitude
        sample.seconds = 1.0e300
        let line = sample.jsonLine
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        for key in ["epoch", "lr", "o", "train_loss", "train_acc", "val_loss", "val_acc", "estimating_error",
                    "gradient_stability", "seconds", "images_per_second", "estimating_error_mean",
                    "gradient_stability_mean"] {
            #expect(object[key] != nil, "missing \(key)")
        }
        #expect(line.hasPrefix("{\"epoch\": 3, \"lr\": "))
        let back = try EpochRecord(jsonLine: line, place: "test")
        #expect(back == sample)
        #expect(back.trainLoss.bitPattern == (0.1 + 0.2).bitPattern)
        #expect(!line.contains("\n"))
    }

    @Test("absent and non-finite values are null")
    func nulls() throws {
        var sample = record(1, indicators: false)
        sample.o = nil
        sample.validationLoss = .nan
        sample.validationAccuracy = .infinity
        let object = try #require(try JSONSerialization.jsonObject(with: Data(sample.jsonLine.utf8)) as? [String: Any])
        for key in ["o", "val_loss", "val_acc", "estimating_error", "gradient_stability"] {
            #expect(object[key] is NSNull, "\(key) should be null")
        }
        let back = try EpochRecord(jsonLine: sample.jsonLine, place: "test")
        #expect(back.o == nil && back.validationLoss == nil && back.estimatingError == nil)
    }

    @Test("appending, then resuming after epoch 2 drops later lines and keeps earlier ones byte for byte")
    func resumeTruncates() throws {
        let directory = try makeTrainingScratchDirectory("log")
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("log.jsonl")
        let log = try TrainingLog(url: url, completedEpochs: 0)
        for epoch in 1...4 { try log.append(record(epoch)) }
        let full = try String(contentsOf: url, encoding: .utf8)
        #expect(full.split(separator: "\n").count == 4)
        #expect(try TrainingLog.read(url: url) == (1...4).map { record($0) })

        let resumed = try TrainingLog(url: url, completedEpochs: 2)
        #expect(resumed.records.map(\.epoch) == [1, 2])
        let kept = try String(contentsOf: url, encoding: .utf8)
        let expectedPrefix = full.split(separator: "\n").prefix(2).map { $0 + "\n" }.joined()
        #expect(kept == expectedPrefix)
        try resumed.append(record(3, loss: 1.5))
        #expect(try TrainingLog.read(url: url).map(\.trainLoss) == [2, 2, 1.5])

        // A fresh run over an old directory starts an empty log.
        _ = try TrainingLog(url: url, completedEpochs: 0)
        #expect(try String(contentsOf: url, encoding: .utf8).isEmpty)
    }

    @Test("a malformed line is an error naming the file and line")
    func malformed() throws {
        let directory = try makeTrainingScratchDirectory("badlog")
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("log.jsonl")
        try Data((record(1).jsonLine + "\n{\"epoch\": 2, \"lr\": oops}\n").utf8).write(to: url)
        #expect {
            _ = try TrainingLog(url: url, completedEpochs: 5)
        } throws: { error in
            let text = "\(error)"
            return text.contains("log.jsonl, line 2") && text.contains("not valid JSON")
        }
        try Data("{\"lr\": 0.1}\n".utf8).write(to: url)
        #expect {
            _ = try TrainingLog.read(url: url)
        } throws: { "\($0)".contains("line 1: missing key \"epoch\"") }
    }
}

/// Checks well-formedness with the platform XML parser and collects element names and text.
private final class SVGInspector: NSObject, XMLParserDelegate {
    var elements: [String: Int] = [:]
    var texts: [String] = []
    var polylines: [[(Double, Double)]] = []
    var root: String?
    private var currentText = ""

    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                attributes: [String: String] = [:]) {
        if root == nil { root = name }
        elements[name, default: 0] += 1
        if name == "text" { currentText = "" }
        if name == "polyline", let points = attributes["points"] {
            polylines.append(points.split(separator: " ").map { pair in
                let parts = pair.split(separator: ",").map { Double($0)! }
                return (parts[0], parts[1])
            })
        }
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) { currentText += string }

    func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
        if name == "text" { texts.append(currentText) }
    }

    static func inspect(_ svg: String) -> (SVGInspector, Bool) {
        let inspector = SVGInspector()
        let parser = XMLParser(data: Data(svg.utf8))
        parser.delegate = inspector
        let ok = parser.parse()
        return (inspector, ok)
    }
}

@Suite("Training: curves.svg")
struct TrainingCurvesTests {
    @Test("well-formed SVG with four panels, axes labels and legends", arguments: [1, 2, 7, 300])
    func wellFormed(epochs: Int) throws {
        let records = (1...epochs).map { record($0, loss: 2.3 - Double($0) / Double(epochs)) }
        let svg = Curves.svg(records, title: "ResNet-20 <1W1A> & ReSTE")
        let (inspector, ok) = SVGInspector.inspect(svg)
        #expect(ok)
        #expect(inspector.root == "svg")
        for title in ["Loss (cross-entropy)", "Top-1 accuracy (%)", "Estimating error",
                      "Gradient stability (variance of |grad|)", "ResNet-20 <1W1A> & ReSTE"] {
            #expect(inspector.texts.contains(title), "missing \(title)")
        }
        #expect(inspector.texts.filter { $0 == "epoch" }.count == 4)
        #expect(inspector.texts.filter { $0 == "validation" }.count == 2)
        #expect(inspector.texts.filter { $0 == "mean over steps" }.count == 2)
        // 8 series; a line needs two points, a lone epoch is drawn as dots.
        #expect(inspector.polylines.count == (epochs > 1 ? 8 : 0))
        #expect((inspector.elements["circle"] ?? 0) == (epochs <= 60 ? 8 * epochs : 0))
        // Every point lies inside the SVG canvas, and each line has one point per epoch.
        for line in inspector.polylines {
            #expect(line.count == epochs)
            #expect(line.allSatisfy { (0...960).contains($0.0) && (0...680).contains($0.1) })
            #expect(zip(line, line.dropFirst()).allSatisfy { $0.0 < $1.0 })
        }
    }

    @Test("a model without binary convolutions gets notes instead of empty indicator plots")
    func noIndicators() {
        let svg = Curves.svg((1...3).map { record($0, indicators: false) })
        let (inspector, ok) = SVGInspector.inspect(svg)
        #expect(ok)
        #expect(inspector.texts.filter { $0 == "no binary convolution in this model" }.count == 2)
        #expect(inspector.polylines.count == 4)
    }

    @Test("an empty log is still a valid document")
    func empty() {
        let (inspector, ok) = SVGInspector.inspect(Curves.svg([]))
        #expect(ok)
        #expect(inspector.polylines.isEmpty)
    }

    @Test("axes: round ticks covering the data, whole epochs, readable labels")
    func axes() {
        #expect(Curves.niceStep(0.23) == 0.5)
        #expect(Curves.niceStep(1) == 1)
        #expect(Curves.niceStep(1.7) == 2)
        #expect(Curves.niceStep(3.1e-9) == 5e-9)
        #expect(Curves.niceStep(7) == 10)
        let axis = Curves.valueAxis([0.83, 2.31])
        #expect(axis.lower <= 0.83 && axis.upper >= 2.31)
        #expect(axis.step == 0.5 && axis.lower == 0.5 && axis.upper == 2.5)
        #expect(axis.ticks.map { Curves.tickLabel($0, on: axis) } == ["0.5", "1.0", "1.5", "2.0", "2.5"])
        let flat = Curves.valueAxis([4, 4])
        #expect(flat.lower < 4 && flat.upper > 4)
        let zero = Curves.valueAxis([0])
        #expect(zero.lower < 0 && zero.upper > 0)
        #expect(Curves.tickLabel(2e-9, on: Curves.Axis(lower: 0, upper: 4e-9, ticks: [], step: 1e-9)) == "2e-09")
        let tiny = Curves.valueAxis([8.5e-5, 1.55e-4])
        #expect(tiny.ticks.map { Curves.tickLabel($0, on: tiny) } == ["8.0e-05", "1.0e-04", "1.2e-04", "1.4e-04", "1.6e-04"])
        #expect(Curves.tickLabel(40, on: Curves.Axis(lower: 0, upper: 50, ticks: [], step: 10)) == "40")
        #expect(Curves.tickLabel(1249.5, on: Curves.Axis(lower: 1249.2, upper: 1249.6, ticks: [], step: 0.1)) == "1249.5")
        #expect(Curves.epochAxis([1]) == Curves.Axis(lower: 0.5, upper: 1.5, ticks: [1], step: 1))
        #expect(Curves.epochAxis([1, 2, 3]).ticks == [1, 2, 3])
        let long = Curves.epochAxis((1...1000).map(Double.init))
        #expect(long.lower == 1 && long.upper == 1000 && long.ticks.count <= 11 && long.step == 200)
        #expect(long.ticks.allSatisfy { $0 == $0.rounded() })
    }

    @Test("written atomically to a file")
    func writes() throws {
        let directory = try makeTrainingScratchDirectory("curves")
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("curves.svg")
        try Curves.write([record(1), record(2)], to: url)
        #expect(try String(contentsOf: url, encoding: .utf8) == Curves.svg([record(1), record(2)]))
    }
}

/// A clock the test moves by hand.
private final class ManualClock: @unchecked Sendable {
    var now = 100.0
}

@Suite("Training: progress display")
struct TrainingProgressTests {
    @Test("terminal: a bar redrawn in place with images/s and ETA, at most every 0.2 s, always at the end")
    func bar() {
        let clock = ManualClock()
        var output: [String] = []
        let progress = TrainingProgress(style: .bar, write: { output.append($0) }, clock: { clock.now })
        progress.beginEpoch(3, of: 10, steps: 4, images: 1000)
        clock.now += 1
        progress.update(step: 1, images: 256, loss: 2.25, accuracy: 0.125)
        #expect(output.count == 1)
        #expect(output[0] == "\repoch 3/10 [######..................] 1/4 loss 2.2500 acc 12.5% 256 img/s ETA 0:03\u{1B}[K")
        clock.now += 0.1
        progress.update(step: 2, images: 512, loss: 2, accuracy: 0.25)
        #expect(output.count == 1)   // too soon
        clock.now += 1.0
        progress.update(step: 4, images: 1000, loss: 1.5, accuracy: 0.5)
        #expect(output.count == 2)
        #expect(output[1].contains("[########################] 4/4") && output[1].contains("ETA 0:00"))
        progress.message("saved")
        #expect(output[2] == "\r\u{1B}[K" && output[3] == "saved\n")
        progress.endEpoch()
        #expect(output.count == 4)   // the message already ended the bar's line
    }

    @Test("not a terminal: plain lines at the given interval, none for the last step")
    func lines() {
        let clock = ManualClock()
        var output: [String] = []
        let progress = TrainingProgress(style: .lines, lineInterval: 10, write: { output.append($0) }, clock: { clock.now })
        progress.beginEpoch(1, of: 2, steps: 100, images: 100 * 64)
        for step in 1...100 {
            clock.now += 1
            progress.update(step: step, images: step * 64, loss: 1, accuracy: 0.5)
        }
        progress.endEpoch()
        #expect(output.count == 9)   // steps 11, 21, ..., 91
        #expect(output.allSatisfy { $0.hasPrefix("epoch 1/2 step ") && $0.hasSuffix("\n") && !$0.contains("\r") })
        #expect(output[0] == "epoch 1/2 step 11/100 loss 1.0000 acc 50.0% 64 img/s ETA 1:29\n")
    }

    @Test("silent writes nothing; durations format as m:ss and h:mm:ss")
    func silentAndDurations() {
        var output: [String] = []
        let progress = TrainingProgress(style: .silent, write: { output.append($0) })
        progress.beginEpoch(1, of: 1, steps: 1, images: 1)
        progress.update(step: 1, images: 1, loss: 0, accuracy: 1)
        progress.message("x")
        progress.endEpoch()
        #expect(output.isEmpty)
        #expect(TrainingProgress.duration(59.6) == "1:00")
        #expect(TrainingProgress.duration(3725) == "1:02:05")
        #expect(TrainingProgress.duration(.nan) == "?")
    }
}

@Suite("Training: Ctrl-C flag", .serialized)
struct TrainingInterruptTests {
    @Test("SIGINT sets the flag instead of ending the process, once")
    func sigint() {
        #expect(Interrupt.install())
        defer { Interrupt.uninstall() }
        #expect(!Interrupt.isRequested)
        // Process-directed, as Ctrl-C is: any thread that does not block SIGINT takes it, so wait for it.
        kill(getpid(), SIGINT)
        let deadline = Date().addingTimeInterval(5)
        while !Interrupt.isRequested && Date() < deadline { usleep(1000) }
        #expect(Interrupt.isRequested)
        Interrupt.reset()
        #expect(!Interrupt.isRequested)
        Interrupt.request()
        #expect(Interrupt.isRequested)
        Interrupt.reset()
    }
}

@Suite("Training configuration")
struct TrainingConfigurationTests {
    @Test("the configuration reads back from its JSON; a checkpoint from before the ReLU setting reads as 0")
    func jsonRoundTrip() throws {
        var configuration = TrainingConfiguration(epochs: 7)
        configuration.estimator = "ste"
        configuration.seed = 12_345_678_901_234
        configuration.reluGradientAtZero = 0.25
        #expect(try TrainingConfiguration(json: configuration.json, place: "test") == configuration)

        let older = configuration.json.replacingOccurrences(of: ", \"relu_grad_at_zero\": 0.25", with: "")
        #expect(older != configuration.json)
        #expect(try TrainingConfiguration(json: older, place: "test").reluGradientAtZero == 0)

        configuration.reluGradientAtZero = 2
        #expect(throws: TrainingError.self) { try configuration.validate() }
    }
}

@Suite("Checkpoint: what the network was trained on")
struct CheckpointRecordTests {
    @Test("classes and input shape are written to the metadata and read back; bad values are named; absent is nil")
    func recordedData() throws {
        let checkpoint = Checkpoint(
            model: [:], optimizer: [:], completedEpochs: 0, partialEpoch: nil, configuration: TrainingConfiguration(),
            classes: 1000, inputShape: [224, 224, 3])
        let metadata = checkpoint.metadata
        #expect(metadata["classes"] == "1000" && metadata["input_shape"] == "[224, 224, 3]")
        let back = try Checkpoint.recordedData(metadata, path: "c")
        #expect(back.classes == 1000 && back.inputShape == [224, 224, 3])
        let none = try Checkpoint.recordedData(["format": "x"], path: "c")
        #expect(none.classes == nil && none.inputShape == nil)
        for (key, value, fragment) in [
            ("classes", "0", "metadata classes \"0\" is not a positive count"),
            ("classes", "ten", "is not a positive count"),
            ("input_shape", "[224, 224]", "is not [height, width, channels]"),
            ("input_shape", "[224, -1, 3]", "is not [height, width, channels]"),
            ("input_shape", "224x224", "is not [height, width, channels]"),
        ] {
            #expect(throws: TrainingError.self) { try Checkpoint.recordedData([key: value], path: "c") }
            #expect { try Checkpoint.recordedData([key: value], path: "c") } throws: { "\($0)".contains(fragment) }
        }
    }
}
