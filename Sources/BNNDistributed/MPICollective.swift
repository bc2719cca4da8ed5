import BNN
import CMPI
import Foundation

/// `Collective` over Open MPI, for processes started by `mpirun`.
///
/// Open MPI is loaded when `join()` is called (see `CMPI`), so programs that use this module run without MPI as
/// long as they are not started by mpirun. All calls must come from the thread that called `join()`.
///
/// A rank waiting for a collective keeps answering the other ranks' questions. When a wait has lasted `timeout`
/// seconds, the rank asks every other rank where it is; a rank that has not answered `answerGrace` seconds later
/// is stuck (stopped, deadlocked, or busy far longer than the others), and the waiting rank ends the job with
/// `MPI_Abort`, naming it. A rank that dies is noticed by mpirun, which ends the job and names it.
public final class MPICollective: Collective, @unchecked Sendable {
    public let rank: Int
    public let size: Int
    /// This process's rank among those on its machine, and their number (nil when the launcher does not say).
    public let localRank: Int?
    public let localSize: Int?
    /// The machine's name as MPI reports it.
    public let host: String
    /// Seconds of waiting after which the other ranks are asked where they are.
    public var timeout: Double
    /// Seconds the other ranks have to answer before the silent ones are named.
    public var answerGrace: Double = 5

    private var pending: [Int: [bnn_mpi_request?]] = [:]
    private var nextTicket = 0
    private var place = "starting"
    private let watchdog = Watchdog()

    private init(rank: Int, size: Int, localRank: Int?, localSize: Int?, host: String, timeout: Double) {
        self.rank = rank
        self.size = size
        self.localRank = localRank
        self.localSize = localSize
        self.host = host
        self.timeout = timeout
    }

    /// Whether this process was started by Open MPI's mpirun (which sets OMPI_COMM_WORLD_SIZE).
    public static var isLaunchedByMPI: Bool {
        ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] != nil
    }

    /// Loads Open MPI, initialises it and joins the job's ranks. Throws when the library cannot be loaded.
    public static func join(timeout: Double = 20) throws -> MPICollective {
        var message = [CChar](repeating: 0, count: 512)
        guard bnn_mpi_load(&message, message.count) == BNN_MPI_OK else {
            throw DistributedError.unavailable(String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        var rank: Int32 = 0, size: Int32 = 0, localRank: Int32 = -1, localSize: Int32 = -1
        try check(bnn_mpi_init(&rank, &size, &localRank, &localSize), "MPI_Init_thread")
        let collective = MPICollective(
            rank: Int(rank), size: Int(size), localRank: localRank >= 0 ? Int(localRank) : nil,
            localSize: localSize >= 1 ? Int(localSize) : nil, host: String(cString: bnn_mpi_processor_name()),
            timeout: timeout)
        try collective.watchdog.listen()
        return collective
    }

    /// Ends MPI (after the last collective of every rank).
    public func finalize() {
        watchdog.stopListening()
        _ = bnn_mpi_finalize()
    }

    /// Prints `message` and ends every rank of the job.
    public func abortJob(_ message: String) -> Never {
        FileHandle.standardError.write(Data("rank \(rank) of \(size) (\(host)): \(message)\n".utf8))
        bnn_mpi_abort(3)
        fatalError("MPI_Abort returned")
    }

    // MARK: Collective

    public func setPlace(_ place: String) { self.place = place }

    public func sum(_ values: UnsafeMutableBufferPointer<Double>, what: String) throws {
        var requests: [bnn_mpi_request?] = []
        for chunk in chunks(values.count) {
            var request: bnn_mpi_request?
            try check(bnn_mpi_start_sum_f64(values.baseAddress! + chunk.lowerBound, Int64(chunk.count), &request), what)
            requests.append(request)
        }
        try waitAll(&requests, what: what)
    }

    public func startSum(_ values: UnsafeMutableBufferPointer<Float>) throws -> CollectiveTicket {
        var requests: [bnn_mpi_request?] = []
        for chunk in chunks(values.count) {
            var request: bnn_mpi_request?
            try check(bnn_mpi_start_sum_f32(values.baseAddress! + chunk.lowerBound, Int64(chunk.count), &request), "a sum")
            requests.append(request)
        }
        nextTicket += 1
        pending[nextTicket] = requests
        return CollectiveTicket(id: nextTicket)
    }

    public func isComplete(_ ticket: CollectiveTicket) throws -> Bool {
        guard var requests = pending[ticket.id] else { return true }
        let done = try testAll(&requests)
        pending[ticket.id] = done ? nil : requests
        try watchdog.answer(place: place)
        return done
    }

    public func wait(_ ticket: CollectiveTicket, what: String) throws {
        guard var requests = pending[ticket.id] else { return }
        pending[ticket.id] = nil
        try waitAll(&requests, what: what)
    }

    public func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int, what: String) throws {
        guard bytes.count > 0 else { return }
        var requests: [bnn_mpi_request?] = []
        for chunk in chunks(bytes.count) {
            var request: bnn_mpi_request?
            try check(
                bnn_mpi_start_broadcast(bytes.baseAddress! + chunk.lowerBound, Int64(chunk.count), Int32(root), &request),
                what)
            requests.append(request)
        }
        try waitAll(&requests, what: what)
    }

    // MARK: Waiting

    private func chunks(_ count: Int) -> [Range<Int>] {
        let limit = Int(bnn_mpi_max_count())
        return stride(from: 0, to: max(count, 1), by: limit).map { $0..<min($0 + limit, count) }
    }

    private func testAll(_ requests: inout [bnn_mpi_request?]) throws -> Bool {
        var all = true
        for i in requests.indices where requests[i] != nil {
            var done: Int32 = 0
            try check(bnn_mpi_test(&requests[i], &done, nil), "MPI_Test")
            if done == 0 { all = false }
        }
        return all
    }

    /// Polls until every request completes, answering the other ranks meanwhile; spins briefly (collectives within
    /// a step complete in microseconds), then sleeps between polls so that a long wait leaves the core to others.
    private func waitAll(_ requests: inout [bnn_mpi_request?], what: String) throws {
        let started = monotonicSeconds()
        var asked: Double?
        var polls = 0
        while try !testAll(&requests) {
            try watchdog.answer(place: place)
            polls += 1
            if polls < 2000 {
                sched_yield()
                continue
            }
            usleep(polls < 20000 ? 50 : 500)
            guard polls % 64 == 0 else { continue }
            let now = monotonicSeconds()
            if asked == nil, now - started >= timeout {
                try watchdog.ask(others: (0..<size).filter { $0 != rank })
                asked = now
            }
            if let askedAt = asked {
                let answers = try watchdog.collectAnswers()
                let silent = (0..<size).filter { $0 != rank && answers[$0] == nil }
                if silent.isEmpty {
                    // Everyone is alive and waiting: a slow collective, not a stuck rank. Ask again later.
                    watchdog.forgetAnswers()
                    asked = nil
                } else if now - askedAt >= answerGrace {
                    let names = silent.map(String.init).joined(separator: ", ")
                    let answered = answers.sorted { $0.key < $1.key }.map { "rank \($0.key) at \($0.value)" }
                    abortJob(
                        "rank\(silent.count == 1 ? "" : "s") \(names) stopped responding: no answer within "
                            + "\(Int(answerGrace)) s after this rank had waited \(Int(timeout)) s for \(what) at \(place)"
                            + (answered.isEmpty ? "" : " (\(answered.joined(separator: "; ")))")
                            + ". Ending the job; the last checkpoint in the run directory stays loadable.")
                }
            }
        }
    }

    private func monotonicSeconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) * 1e-9
    }
}

/// Errors of the MPI layer.
public enum DistributedError: Error, CustomStringConvertible {
    /// Open MPI could not be loaded.
    case unavailable(String)
    /// An MPI call failed.
    case mpi(call: String, message: String)

    public var description: String {
        switch self {
        case .unavailable(let message): "MPI is not available: \(message)"
        case .mpi(let call, let message): "MPI failed during \(call): \(message)"
        }
    }
}

func check(_ code: Int32, _ call: String) throws {
    guard code == BNN_MPI_OK else {
        throw DistributedError.mpi(call: call, message: String(cString: bnn_mpi_error_text(code)))
    }
}

/// The point-to-point side of the watchdog: questions ("where are you?") and answers (a place), on their own
/// communicator so that they never mix with the collectives.
private final class Watchdog {
    static let questionTag: Int32 = 17
    static let answerTag: Int32 = 18
    static let answerBytes = 240

    private var question: bnn_mpi_request?
    private let questionBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 8)
    /// Answers this rank sent that may still be in flight (their buffers must live until they complete).
    private var outgoing: [(request: bnn_mpi_request?, buffer: UnsafeMutableRawBufferPointer)] = []
    /// Questions this rank asked: per rank, the receive of its answer.
    private var expected: [Int: (request: bnn_mpi_request?, buffer: UnsafeMutableRawBufferPointer)] = [:]
    private var answers: [Int: String] = [:]
    private var listening = false

    deinit {
        questionBuffer.deallocate()
    }

    func listen() throws {
        try check(bnn_mpi_start_receive(questionBuffer.baseAddress, 8, -1, Watchdog.questionTag, &question), "MPI_Irecv")
        listening = true
    }

    func stopListening() {
        if listening { _ = bnn_mpi_cancel(&question) }
        listening = false
    }

    /// Answers a question that arrived, if any, with `place`; frees completed answers.
    func answer(place: String) throws {
        outgoing.removeAll { entry in
            var request = entry.request
            var done: Int32 = 0
            _ = bnn_mpi_test(&request, &done, nil)
            if done != 0 { entry.buffer.deallocate() }
            return done != 0
        }
        guard listening else { return }
        var done: Int32 = 0
        var source: Int32 = -1
        try check(bnn_mpi_test(&question, &done, &source), "MPI_Test")
        guard done != 0 else { return }
        let text = Array(place.utf8.prefix(Watchdog.answerBytes))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Watchdog.answerBytes, alignment: 8)
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        buffer.copyBytes(from: text)
        var request: bnn_mpi_request?
        try check(bnn_mpi_start_send(buffer.baseAddress, Int64(Watchdog.answerBytes), source, Watchdog.answerTag, &request),
                  "MPI_Isend")
        outgoing.append((request, buffer))
        try check(bnn_mpi_start_receive(questionBuffer.baseAddress, 8, -1, Watchdog.questionTag, &question), "MPI_Irecv")
    }

    /// Asks each of `ranks` where it is.
    func ask(others ranks: [Int]) throws {
        for peer in ranks where expected[peer] == nil {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Watchdog.answerBytes, alignment: 8)
            var receive: bnn_mpi_request?
            try check(bnn_mpi_start_receive(buffer.baseAddress, Int64(Watchdog.answerBytes), Int32(peer), Watchdog.answerTag, &receive),
                      "MPI_Irecv")
            expected[peer] = (receive, buffer)
            let question = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 8)
            question.initializeMemory(as: UInt8.self, repeating: 0)
            var send: bnn_mpi_request?
            try check(bnn_mpi_start_send(question.baseAddress, 8, Int32(peer), Watchdog.questionTag, &send), "MPI_Isend")
            outgoing.append((send, question))
        }
    }

    /// The answers received so far to `ask`, by rank.
    func collectAnswers() throws -> [Int: String] {
        for (peer, entry) in expected where answers[peer] == nil {
            var request = entry.request
            var done: Int32 = 0
            try check(bnn_mpi_test(&request, &done, nil), "MPI_Test")
            expected[peer] = (request, entry.buffer)
            if done != 0 {
                let bytes = entry.buffer.prefix { $0 != 0 }
                answers[peer] = String(decoding: bytes, as: UTF8.self)
            }
        }
        return answers
    }

    /// Forgets answers (all arrived) so that a later wait asks afresh.
    func forgetAnswers() {
        for (_, entry) in expected { entry.buffer.deallocate() }
        expected = [:]
        answers = [:]
    }
}
