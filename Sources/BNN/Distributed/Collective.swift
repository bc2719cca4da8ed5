/// The operations data-parallel training needs from the processes it runs in: every rank holds a replica of the
/// network, trains on its share of each batch and joins the others in these collectives.
///
/// `BNN` defines the contract and uses it (gradient averaging, synchronised batch norm, the trainer's agreements);
/// it never links a transport. `BNNDistributed` implements it over MPI. Every rank must call the collectives in
/// the same order with the same sizes, as MPI requires; the trainer and the ops do so because every rank runs the
/// same program on the same network.
///
/// Calls come from one thread: the one that trains.
public protocol Collective: AnyObject, Sendable {
    /// This process's rank, 0 ..< `size`; rank 0 writes the run's files.
    var rank: Int { get }
    /// The number of ranks.
    var size: Int { get }

    /// Replaces `values` by their elementwise sum over all ranks and returns when done. `what` says what is being
    /// summed (for the error a rank that stops responding causes).
    func sum(_ values: UnsafeMutableBufferPointer<Double>, what: String) throws

    /// Starts summing `values` over all ranks in place and returns at once; the buffer must stay alive and
    /// untouched until `wait` returns for the ticket.
    func startSum(_ values: UnsafeMutableBufferPointer<Float>) throws -> CollectiveTicket

    /// Whether a started sum has completed (and moves outstanding work on).
    func isComplete(_ ticket: CollectiveTicket) throws -> Bool

    /// Returns when the started sum is done.
    func wait(_ ticket: CollectiveTicket, what: String) throws

    /// Copies `bytes` of rank `root` into `bytes` of every other rank (the same count on every rank).
    func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int, what: String) throws

    /// Where this rank is now ("epoch 3, step 12"), for the messages about ranks that stop responding.
    func setPlace(_ place: String)
}

/// A started collective, redeemed with `Collective.wait`.
public struct CollectiveTicket: Hashable, Sendable {
    /// Chosen by the implementation.
    public let id: Int

    public init(id: Int) { self.id = id }
}

extension Collective {
    /// Sums a few numbers over all ranks (counts, losses, flags): a convenience over `sum(_:what:)`.
    public func sum(_ values: [Double], what: String) throws -> [Double] {
        var result = values
        try result.withUnsafeMutableBufferPointer { try sum($0, what: what) }
        return result
    }

    /// Rank 0's bytes on every rank; other ranks pass an array of any length and get rank 0's.
    public func broadcast(_ bytes: [UInt8], what: String) throws -> [UInt8] {
        var length = [Double(rank == 0 ? bytes.count : 0)]
        try length.withUnsafeMutableBufferPointer { try sum($0, what: "\(what) (its length)") }
        var result = rank == 0 ? bytes : [UInt8](repeating: 0, count: Int(length[0]))
        if !result.isEmpty {
            try result.withUnsafeMutableBytes { try broadcast($0, root: 0, what: what) }
        }
        return result
    }
}
