import BNN
import Testing

/// Expects `body` to throw a `BNNError` of `kind` and returns it; records an issue naming what it did instead.
@discardableResult
func expectBNNError<R>(
    _ kind: BNNError.Kind, _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> R
) -> BNNError? {
    do {
        _ = try body()
        Issue.record("expected a BNNError of kind \(kind), nothing was thrown\(comment.map { ": \($0)" } ?? "")",
                     sourceLocation: sourceLocation)
    } catch let error as BNNError {
        #expect(error.kind == kind, "\(error.message)\(comment.map { " (\($0))" } ?? "")", sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("expected a BNNError of kind \(kind), got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
    }
    return nil
}
