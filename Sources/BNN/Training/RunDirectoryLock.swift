import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One writer per run directory: an advisory `flock` on `RUN_DIR/train.lock`, held as long as this object lives.
///
/// Two trainers writing one directory would interleave `log.jsonl` and leave a checkpoint of one run beside a log
/// of both. The lock is taken before anything in the directory is read or written; a second trainer finds it held
/// and fails naming the directory and the holder's PID, which the holder writes into the file.
///
/// Why `flock` and not `fcntl` record locks: `fcntl` locks belong to the process, so a second trainer in the same
/// process would be let in (and closing any descriptor of the file would drop the lock); `flock` locks belong to
/// the open file description, so they exclude every other opener, and the kernel releases them when the process
/// dies, however it dies — a stale lock file is never mistaken for a live run. The file is left in place when the
/// lock is released: unlinking it would let a third process lock a fresh file while a second still waits on the
/// old one.
public final class RunDirectoryLock {
    /// The lock file's name inside a run directory.
    public static let fileName = "train.lock"

    /// The run directory.
    public let directory: URL
    /// The lock file.
    public var url: URL { directory.appendingPathComponent(Self.fileName) }
    /// The open lock file, or -1 once released.
    private var descriptor: Int32
    /// Whether this object still holds the lock.
    public var isHeld: Bool { descriptor >= 0 }

    /// Takes the lock of `directory` (which must exist) without waiting. Throws `TrainingError.runDirectoryInUse`
    /// naming the holder when another process or trainer holds it, `TrainingError.io` when the lock file cannot be
    /// opened or locked.
    public init(directory: URL) throws(TrainingError) {
        self.directory = directory
        let path = directory.appendingPathComponent(Self.fileName).path
        descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0o644)
        guard descriptor >= 0 else {
            throw .io(path: path, reason: "cannot open the run directory's lock file: \(FileAccess.explain(errno, path: path))")
        }
        var status = stat()
        guard fstat(descriptor, &status) == 0, FileAccess.isRegular(status.st_mode) else {
            _ = close(descriptor)
            throw .io(path: path, reason: "the run directory's lock file is not a regular file")
        }
        while flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            if code == EINTR { continue }
            let holder = code == EWOULDBLOCK ? Self.holder(descriptor) : nil
            _ = close(descriptor)
            if code == EWOULDBLOCK {
                throw .runDirectoryInUse(path: directory.path, pid: holder)
            }
            throw .io(path: path, reason: "cannot lock the run directory: \(FileAccess.explain(code, path: path))")
        }
        // Holding the lock: record who holds it for the next one to name. A failure here only loses that name.
        let record = Array("\(getpid())\n".utf8)
        if ftruncate(descriptor, 0) == 0 {
            _ = record.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
        }
    }

    /// Releases the lock (also done when the object is destroyed, or by the kernel when the process ends).
    public func release() {
        guard descriptor >= 0 else { return }
        // Closing the descriptor drops the flock; the PID stays in the file, harmlessly: it is only read while
        // the lock is held by someone.
        _ = close(descriptor)
        descriptor = -1
    }

    deinit { release() }

    /// The PID recorded in the lock file by its holder, if readable (the holder may not have written it yet).
    private static func holder(_ descriptor: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return nil }
        let text = String(decoding: buffer[0..<count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let pid = Int32(text), pid > 0 else { return nil }
        return pid
    }
}
