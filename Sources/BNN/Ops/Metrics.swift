/// Number of rows of `logits` `[N, classes]` whose label is among the `k` largest logits. Ties are ranked by
/// class index (lower first), so k = 1 agrees with `argmax`'s first maximum. Records nothing.
public func topKCorrect(_ logits: Tensor, labels: [Int], k: Int = 1) throws -> Int {
    try requireRank(logits, 2, "logits", of: "topKCorrect", layout: "[N, classes]")
    let (rows, classes) = (logits.shape[0], logits.shape[1])
    guard labels.count == rows else {
        throw BNNError(.tensor, "topKCorrect: \(labels.count) `labels` for \(rows) rows of `logits` \(logits.shape)")
    }
    guard k >= 1 else { throw BNNError(.tensor, "topKCorrect: `k` must be at least 1, got \(k)") }
    if let bad = labels.firstIndex(where: { $0 < 0 || $0 >= classes }) {
        throw BNNError(.tensor, "topKCorrect: `labels[\(bad)]` is \(labels[bad]), outside 0..<\(classes)")
    }
    return logits.withUnsafeBufferPointer { values in
        var correct = 0
        for row in 0..<rows {
            let base = row * classes
            let label = labels[row]
            let target = values[base + label]
            // Rank of the label: classes strictly above it, plus equal ones that come first.
            var above = 0
            for c in 0..<classes {
                let v = values[base + c]
                if v > target || (v == target && c < label) { above += 1 }
            }
            if above < k { correct += 1 }
        }
        return correct
    }
}

/// Fraction of rows whose label is among the `k` largest logits (top-1 accuracy by default).
public func accuracy(_ logits: Tensor, labels: [Int], k: Int = 1) throws -> Double {
    let correct = try topKCorrect(logits, labels: labels, k: k)
    return labels.isEmpty ? 0 : Double(correct) / Double(labels.count)
}
