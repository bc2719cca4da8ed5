import Foundation

/// `RUN_DIR/curves.svg`: loss, accuracy and the paper's two indicators per epoch, as a self-contained SVG
/// (no script, no external file) that any browser shows.
public enum Curves {
    /// The SVG document for `records` (in epoch order). Absent values are left out of their line; a panel
    /// with no value at all says so instead of drawing axes.
    public static func svg(_ records: [EpochRecord], title: String = "Training curves") -> String {
        let epochs = records.map { Double($0.epoch) }
        func series(_ name: String, _ color: String, dashed: Bool = false, _ value: (EpochRecord) -> Double?)
            -> CurveSeries
        {
            var points: [(x: Double, y: Double)] = []
            for (x, record) in zip(epochs, records) {
                if let y = value(record), y.isFinite { points.append((x, y)) }
            }
            return CurveSeries(name: name, color: color, dashed: dashed, points: points)
        }
        let train = "#1f77b4", validation = "#ff7f0e", indicator = "#2ca02c", indicatorMean = "#9467bd"
        let panels = [
            CurvePanel(title: "Loss (cross-entropy)", series: [
                series("train", train) { $0.trainLoss },
                series("validation", validation) { $0.validationLoss },
            ], emptyNote: "no finite loss yet"),
            CurvePanel(title: "Top-1 accuracy (%)", series: [
                series("train", train) { 100 * $0.trainAccuracy },
                series("validation", validation) { $0.validationAccuracy.map { 100 * $0 } },
            ], emptyNote: "no accuracy yet"),
            CurvePanel(title: "Estimating error", series: [
                series("after last step", indicator) { $0.estimatingError },
                series("mean over steps", indicatorMean, dashed: true) { $0.estimatingErrorMean },
            ], emptyNote: "no binary convolution in this model"),
            CurvePanel(title: "Gradient stability (variance of |grad|)", series: [
                series("after last step", indicator) { $0.gradientStability },
                series("mean over steps", indicatorMean, dashed: true) { $0.gradientStabilityMean },
            ], emptyNote: "no binary convolution in this model"),
        ]
        let xRange = epochAxis(epochs)
        let panelWidth = 480.0, panelHeight = 320.0, heading = 40.0
        var svg = SVGWriter(width: 2 * panelWidth, height: 2 * panelHeight + heading)
        svg.text(title, x: panelWidth, y: 26, size: 18, anchor: "middle", weight: "bold")
        for (index, panel) in panels.enumerated() {
            let origin = (x: Double(index % 2) * panelWidth, y: heading + Double(index / 2) * panelHeight)
            draw(panel, into: &svg, x: origin.x, y: origin.y, width: panelWidth, height: panelHeight, xAxis: xRange)
        }
        return svg.finished()
    }

    /// Writes `svg(records)` to `url` atomically.
    public static func write(_ records: [EpochRecord], to url: URL, title: String = "Training curves") throws(TrainingError) {
        do {
            try FileAccess.writeAtomically([Array(svg(records, title: title).utf8)], to: url.path)
        } catch {
            throw .io(path: url.path, reason: "cannot write the curves: \(error.reason)")
        }
    }

    // MARK: Axes

    /// An axis: its range and where the ticks go.
    struct Axis: Equatable {
        var lower: Double
        var upper: Double
        var ticks: [Double]
        var step: Double
    }

    /// Whole epochs: 1 … last (a lone epoch sits in the middle of 0.5 … 1.5).
    static func epochAxis(_ epochs: [Double]) -> Axis {
        let last = max(epochs.max() ?? 1, 1)
        let first = min(epochs.min() ?? 1, last)
        if first == last { return Axis(lower: first - 0.5, upper: last + 0.5, ticks: [first], step: 1) }
        let step = max(1, niceStep((last - first) / 6).rounded())
        var ticks: [Double] = []
        var tick = (first / step).rounded(.up) * step
        while tick <= last + 1e-9 {
            ticks.append(tick)
            tick += step
        }
        return Axis(lower: first, upper: last, ticks: ticks, step: step)
    }

    /// A value axis covering `values`, widened to round ticks (about five of them).
    static func valueAxis(_ values: [Double]) -> Axis {
        var lower = values.min() ?? 0
        var upper = values.max() ?? 1
        if lower == upper {
            let pad = lower == 0 ? 1 : abs(lower) * 0.1
            lower -= pad
            upper += pad
        }
        let step = niceStep((upper - lower) / 4)
        let first = (lower / step).rounded(.down)
        let last = (upper / step).rounded(.up)
        let ticks = stride(from: first, through: last, by: 1).map { $0 * step }
        return Axis(lower: first * step, upper: last * step, ticks: ticks, step: step)
    }

    /// 1, 2 or 5 times a power of ten, at least `raw`'s order of magnitude.
    static func niceStep(_ raw: Double) -> Double {
        guard raw > 0, raw.isFinite else { return 1 }
        let magnitude = pow(10, (log10(raw)).rounded(.down))
        let normalised = raw / magnitude
        let factor: Double = normalised <= 1 ? 1 : normalised <= 2 ? 2 : normalised <= 5 ? 5 : 10
        return factor * magnitude
    }

    /// Tick label: plain decimals with as many places as the step needs, scientific for tiny or huge values.
    static func tickLabel(_ value: Double, on axis: Axis) -> String {
        if value == 0 { return "0" }
        let step = axis.step
        let largest = max(abs(axis.lower), abs(axis.upper), step)
        if step < 1e-3 || largest >= 1e6 {
            // Scientific, with as many mantissa digits as the step needs, the same for every tick of the axis.
            let digits = max(0, Int(log10(largest).rounded(.down) - log10(step).rounded(.down)))
            return String(format: "%.\(min(digits, 6))e", value)
        }
        let places = max(0, Int((-log10(step)).rounded(.up)))
        return String(format: "%.\(places)f", value)
    }

    // MARK: Drawing

    private static func draw(
        _ panel: CurvePanel, into svg: inout SVGWriter, x: Double, y: Double, width: Double, height: Double,
        xAxis: Axis
    ) {
        let plot = (left: x + 78, right: x + width - 18, top: y + 52, bottom: y + height - 48)
        svg.text(panel.title, x: x + width / 2, y: y + 22, size: 14, anchor: "middle", weight: "bold")
        let values = panel.series.flatMap { $0.points.map(\.y) }
        guard !values.isEmpty else {
            svg.rectangle(x: plot.left, y: plot.top, width: plot.right - plot.left, height: plot.bottom - plot.top,
                          stroke: "#bbbbbb")
            svg.text(panel.emptyNote, x: (plot.left + plot.right) / 2, y: (plot.top + plot.bottom) / 2,
                     size: 12, anchor: "middle", color: "#777777")
            return
        }
        let yAxis = valueAxis(values)
        func px(_ value: Double) -> Double {
            plot.left + (value - xAxis.lower) / (xAxis.upper - xAxis.lower) * (plot.right - plot.left)
        }
        func py(_ value: Double) -> Double {
            plot.bottom - (value - yAxis.lower) / (yAxis.upper - yAxis.lower) * (plot.bottom - plot.top)
        }
        // Grid and tick labels.
        for tick in yAxis.ticks {
            svg.line(x1: plot.left, y1: py(tick), x2: plot.right, y2: py(tick), stroke: "#e5e5e5")
            svg.line(x1: plot.left - 4, y1: py(tick), x2: plot.left, y2: py(tick), stroke: "#333333")
            svg.text(tickLabel(tick, on: yAxis), x: plot.left - 7, y: py(tick) + 4, size: 11, anchor: "end")
        }
        for tick in xAxis.ticks {
            svg.line(x1: px(tick), y1: plot.bottom, x2: px(tick), y2: plot.bottom + 4, stroke: "#333333")
            svg.text(tickLabel(tick, on: xAxis), x: px(tick), y: plot.bottom + 17, size: 11, anchor: "middle")
        }
        svg.rectangle(x: plot.left, y: plot.top, width: plot.right - plot.left, height: plot.bottom - plot.top,
                      stroke: "#333333")
        svg.text("epoch", x: (plot.left + plot.right) / 2, y: plot.bottom + 36, size: 12, anchor: "middle")
        // Curves: a line through the points, and a dot on each when there are few enough to see them.
        for series in panel.series where !series.points.isEmpty {
            let points = series.points.map { (px($0.x), py($0.y)) }
            if points.count > 1 { svg.polyline(points, stroke: series.color, dashed: series.dashed) }
            if points.count <= 60 {
                for point in points { svg.circle(x: point.0, y: point.1, radius: 2.5, fill: series.color) }
            }
        }
        // Legend, one entry per series that has data, along the top edge.
        var legendX = plot.left
        for series in panel.series where !series.points.isEmpty {
            svg.line(x1: legendX, y1: y + 40, x2: legendX + 22, y2: y + 40, stroke: series.color,
                     width: 2, dashed: series.dashed)
            svg.text(series.name, x: legendX + 27, y: y + 44, size: 11, anchor: "start")
            legendX += 40 + Double(series.name.count) * 6.5
        }
    }
}

/// One line of a panel.
struct CurveSeries {
    var name: String
    var color: String
    var dashed: Bool
    var points: [(x: Double, y: Double)]
}

/// One plot: a title and its lines.
struct CurvePanel {
    var title: String
    var series: [CurveSeries]
    var emptyNote: String
}

/// Accumulates SVG elements; all text is escaped, all numbers written with two decimals.
struct SVGWriter {
    private var body: [String] = []
    private let width: Double
    private let height: Double

    init(width: Double, height: Double) {
        self.width = width
        self.height = height
    }

    mutating func text(
        _ content: String, x: Double, y: Double, size: Double, anchor: String, weight: String = "normal",
        color: String = "#222222"
    ) {
        body.append(
            "<text x=\"\(n(x))\" y=\"\(n(y))\" font-size=\"\(n(size))\" text-anchor=\"\(anchor)\" "
                + "font-weight=\"\(weight)\" fill=\"\(color)\">\(escape(content))</text>")
    }

    mutating func line(
        x1: Double, y1: Double, x2: Double, y2: Double, stroke: String, width: Double = 1, dashed: Bool = false
    ) {
        body.append(
            "<line x1=\"\(n(x1))\" y1=\"\(n(y1))\" x2=\"\(n(x2))\" y2=\"\(n(y2))\" stroke=\"\(stroke)\" "
                + "stroke-width=\"\(n(width))\"\(dashed ? " stroke-dasharray=\"5 3\"" : "")/>")
    }

    mutating func rectangle(x: Double, y: Double, width: Double, height: Double, stroke: String) {
        body.append(
            "<rect x=\"\(n(x))\" y=\"\(n(y))\" width=\"\(n(width))\" height=\"\(n(height))\" fill=\"none\" "
                + "stroke=\"\(stroke)\"/>")
    }

    mutating func polyline(_ points: [(Double, Double)], stroke: String, dashed: Bool) {
        let list = points.map { "\(n($0.0)),\(n($0.1))" }.joined(separator: " ")
        body.append(
            "<polyline points=\"\(list)\" fill=\"none\" stroke=\"\(stroke)\" stroke-width=\"2\""
                + "\(dashed ? " stroke-dasharray=\"5 3\"" : "") stroke-linejoin=\"round\"/>")
    }

    mutating func circle(x: Double, y: Double, radius: Double, fill: String) {
        body.append("<circle cx=\"\(n(x))\" cy=\"\(n(y))\" r=\"\(n(radius))\" fill=\"\(fill)\"/>")
    }

    func finished() -> String {
        """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(n(width))" height="\(n(height))" \
        viewBox="0 0 \(n(width)) \(n(height))" font-family="Helvetica, Arial, sans-serif">
        <rect x="0" y="0" width="\(n(width))" height="\(n(height))" fill="white"/>
        \(body.joined(separator: "\n"))
        </svg>

        """
    }

    private func n(_ value: Double) -> String { String(format: "%.2f", value) }

    private func escape(_ text: String) -> String {
        var escaped = ""
        for character in text {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}
