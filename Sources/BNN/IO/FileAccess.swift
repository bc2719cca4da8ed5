import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// Reading and writing the library's files with POSIX calls rather than Foundation's, for two reasons. Foundation
// reports what went wrong as "The operation could not be completed. (NSCocoaErrorDomain error 256.)" or, as root
// for /dev/null, "You don't have permission"; the calls here say what the path is instead ("is a directory", "is
// not a regular file (a character device)", "a parent, /a/b, is not a directory"). And an atomic write renames a
// temporary file over its destination: as root that rename replaces /dev/null or any other special file with a
// regular one, so the destination's kind is checked first.

/// A file or directory could not be read, written or created: the path and what is wrong with it, in words.
struct FileAccessError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The path concerned.
    let path: String
    /// What is wrong, e.g. "is a directory" or "a parent, /a/b, is not a directory".
    let reason: String

    /// An error about `path`.
    init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }

    /// "PATH: REASON".
    var description: String { "\(path): \(reason)" }
}

/// POSIX file access with errors that name the problem (see the comment at the top of FileAccess.swift).
enum FileAccess {
    /// Reads a whole regular file. Directories, devices, FIFOs and sockets are refused by their kind (a FIFO is
    /// opened without blocking, so that reading one cannot hang); a file larger than `limit` bytes is refused
    /// before anything is allocated, naming the limit.
    static func readRegularFile(_ path: String, limit: Int = Int.max) throws(FileAccessError) -> Data {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard descriptor >= 0 else { throw FileAccessError(path: path, reason: explain(errno, path: path)) }
        defer { _ = close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw FileAccessError(path: path, reason: explain(errno, path: path)) }
        guard isRegular(status.st_mode) else {
            throw FileAccessError(path: path, reason: notRegular(status.st_mode))
        }
        let size = Int(status.st_size)
        guard size <= limit else {
            throw FileAccessError(path: path, reason: "is \(size) bytes, over the limit of \(limit) bytes")
        }
        // The size is a hint: the file may change while it is read, so the loop reads until the end of the file
        // and still holds to the limit.
        var bytes = [UInt8](repeating: 0, count: size)
        var count = 0
        while true {
            if count == bytes.count {
                guard count < limit else {
                    var probe: UInt8 = 0
                    let extra = read(descriptor, &probe, 1)
                    if extra == 0 { break }
                    if extra < 0 && errno == EINTR { continue }
                    if extra < 0 { throw FileAccessError(path: path, reason: explain(errno, path: path)) }
                    throw FileAccessError(path: path, reason: "grew past the limit of \(limit) bytes while being read")
                }
                bytes.append(contentsOf: repeatElement(0, count: Swift.min(limit - count, Swift.max(count, 65_536))))
            }
            let got = bytes.withUnsafeMutableBytes { buffer in
                read(descriptor, buffer.baseAddress! + count, buffer.count - count)
            }
            if got < 0 {
                if errno == EINTR { continue }
                throw FileAccessError(path: path, reason: explain(errno, path: path))
            }
            if got == 0 { break }
            count += got
        }
        bytes.removeSubrange(count...)
        return Data(bytes)
    }

    /// Writes `chunks` to `path` atomically: checks that the destination is a regular file or absent and that its
    /// directory exists, writes a temporary file beside it (`temporaryName(for:)`), flushes it to disk and renames
    /// it over `path`. A failure at any point leaves the previous file untouched and removes the temporary file.
    static func writeAtomically(_ chunks: [[UInt8]], to path: String) throws(FileAccessError) {
        try checkWritableDestination(path)
        let url = URL(fileURLWithPath: path)
        let directory = url.deletingLastPathComponent().path
        let temporary = url.deletingLastPathComponent().appendingPathComponent(temporaryName(for: url.lastPathComponent)).path
        func failure(_ what: String) -> FileAccessError {
            FileAccessError(path: path, reason: "\(what): \(explain(errno, path: temporary))")
        }
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw failure("cannot create the temporary file \(temporary)") }
        var closed = false
        var renamed = false
        defer {
            if !closed { _ = close(descriptor) }
            if !renamed { _ = unlink(temporary) }
        }
        for chunk in chunks {
            guard writeAll(descriptor, chunk) else { throw failure("cannot write the temporary file \(temporary)") }
        }
        guard fsync(descriptor) == 0 else { throw failure("cannot flush \(temporary) to disk") }
        closed = true
        guard close(descriptor) == 0 else { throw failure("cannot close \(temporary)") }
        guard rename(temporary, path) == 0 else { throw failure("cannot rename \(temporary) over it") }
        renamed = true
        // Persist the rename itself; failure here cannot undo the write, so it is not reported.
        let directoryDescriptor = open(directory.isEmpty ? "." : directory, O_RDONLY | O_CLOEXEC)
        if directoryDescriptor >= 0 {
            _ = fsync(directoryDescriptor)
            _ = close(directoryDescriptor)
        }
    }

    /// Appends `bytes` to the existing regular file `path` and flushes them to disk.
    static func append(_ bytes: [UInt8], to path: String) throws(FileAccessError) {
        let descriptor = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard descriptor >= 0 else { throw FileAccessError(path: path, reason: explain(errno, path: path)) }
        defer { _ = close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw FileAccessError(path: path, reason: explain(errno, path: path)) }
        guard isRegular(status.st_mode) else { throw FileAccessError(path: path, reason: notRegular(status.st_mode)) }
        guard writeAll(descriptor, bytes), fsync(descriptor) == 0 else {
            throw FileAccessError(path: path, reason: "cannot append: \(explain(errno, path: path))")
        }
    }

    /// Creates `path` and any missing parents, like `mkdir -p`; an existing directory is fine. Fails naming the
    /// first component that exists but is not a directory, or that cannot be created.
    static func createDirectory(_ path: String) throws(FileAccessError) {
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        var prefix = ""
        let components = absolute.split(separator: "/", omittingEmptySubsequences: true)
        for (index, component) in components.enumerated() {
            prefix += "/" + component
            var status = stat()
            if stat(prefix, &status) == 0 {
                guard isDirectory(status.st_mode) else {
                    let what = "is \(kindName(status.st_mode)), not a directory"
                    if index == components.count - 1 { throw FileAccessError(path: path, reason: "exists and \(what)") }
                    throw FileAccessError(path: path, reason: "a parent, \(prefix), \(what)")
                }
                continue
            }
            guard errno == ENOENT else { throw FileAccessError(path: path, reason: explain(errno, path: prefix)) }
            // EEXIST: another process created it in between, which is as good.
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw FileAccessError(path: path, reason: "cannot create \(prefix): \(explain(errno, path: prefix))")
            }
        }
    }

    /// Throws unless `path` can be replaced by a regular file: it is absent or a regular file (or a symbolic
    /// link to one, which the rename replaces), and its parent is an existing directory.
    static func checkWritableDestination(_ path: String) throws(FileAccessError) {
        var status = stat()
        if stat(path, &status) == 0 {
            guard isRegular(status.st_mode) else { throw FileAccessError(path: path, reason: notRegular(status.st_mode)) }
            return
        }
        let code = errno
        guard code == ENOENT else { throw FileAccessError(path: path, reason: explain(code, path: path)) }
        // Absent: its directory must exist. explain() names the missing or non-directory ancestor.
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        if stat(directory, &status) != 0 {
            throw FileAccessError(path: path, reason: explain(errno, path: path))
        }
        guard isDirectory(status.st_mode) else {
            throw FileAccessError(path: path, reason: "a parent, \(directory), is \(kindName(status.st_mode)), not a directory")
        }
    }

    // MARK: Temporary files

    /// The name of the temporary file that `writeAtomically` writes beside `name` before renaming it:
    /// `.NAME.tmp-PID-RANDOM`, hidden, unique per process and call.
    static func temporaryName(for name: String) -> String {
        ".\(name).tmp-\(getpid())-\(String(UInt64.random(in: 0...UInt64.max), radix: 16))"
    }

    /// Whether `candidate` is a temporary file that `writeAtomically` made for `name` (see `temporaryName(for:)`).
    static func isTemporaryName(_ candidate: String, for name: String) -> Bool {
        let prefix = ".\(name).tmp-"
        guard candidate.hasPrefix(prefix) else { return false }
        let parts = candidate.dropFirst(prefix.count).split(separator: "-", omittingEmptySubsequences: false)
        return parts.count == 2 && !parts[0].isEmpty && parts[0].allSatisfy(\.isASCII) && parts[0].allSatisfy(\.isNumber)
            && !parts[1].isEmpty && parts[1].allSatisfy(\.isHexDigit)
    }

    /// Removes the temporary files of `names` in `directory` that a killed writer left behind (the caller must
    /// know that no writer is active, e.g. by holding the directory's lock); returns the paths removed.
    static func removeTemporaryFiles(in directory: String, for names: [String]) -> [String] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        var removed: [String] = []
        for entry in entries.sorted() where names.contains(where: { isTemporaryName(entry, for: $0) }) {
            let path = URL(fileURLWithPath: directory).appendingPathComponent(entry).path
            var status = stat()
            // Only regular files: a directory or device with such a name is not one of ours.
            guard lstat(path, &status) == 0, isRegular(status.st_mode), unlink(path) == 0 else { continue }
            removed.append(path)
        }
        return removed
    }

    // MARK: Describing failures

    /// `errno` from an operation on `path`, in words. ENOENT and ENOTDIR name the ancestor at fault.
    static func explain(_ code: Int32, path: String) -> String {
        switch code {
        case ENOENT:
            if let (ancestor, mode) = firstNonDirectoryAncestor(of: path) {
                return mode.map { "a parent, \(ancestor), is \(kindName($0)), not a directory" }
                    ?? "its directory \(ancestor) does not exist"
            }
            return "does not exist"
        case ENOTDIR:
            if let (ancestor, mode) = firstNonDirectoryAncestor(of: path), let mode {
                return "a parent, \(ancestor), is \(kindName(mode)), not a directory"
            }
            return "a parent is not a directory"
        case EISDIR: return "is a directory"
        case EACCES, EPERM: return "permission denied"
        case ENOSPC: return "no space left on the device"
        case EDQUOT: return "the disk quota is exhausted"
        case EROFS: return "the file system is read-only"
        case ELOOP: return "too many levels of symbolic links"
        case ENAMETOOLONG: return "the name is too long"
        case ENXIO: return "is a device or FIFO that cannot be opened (no reader or no device)"
        default: return String(cString: strerror(code))
        }
    }

    /// The first proper ancestor of `path` (from the root down) that is missing or is not a directory, with its
    /// mode when it exists; nil when every ancestor is a directory.
    private static func firstNonDirectoryAncestor(of path: String) -> (String, mode_t?)? {
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        let components = absolute.split(separator: "/", omittingEmptySubsequences: true).dropLast()
        var prefix = ""
        for component in components {
            prefix += "/" + component
            var status = stat()
            if stat(prefix, &status) != 0 { return (prefix, nil) }
            if !isDirectory(status.st_mode) { return (prefix, status.st_mode) }
        }
        return nil
    }

    /// "is a directory" or "is not a regular file (it is a character device)".
    static func notRegular(_ mode: mode_t) -> String {
        isDirectory(mode) ? "is a directory" : "is not a regular file (it is \(kindName(mode)))"
    }

    /// What kind of file a mode describes, with an article: "a directory", "a character device", ...
    static func kindName(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFREG: return "a regular file"
        case S_IFDIR: return "a directory"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFIFO: return "a FIFO"
        case S_IFSOCK: return "a socket"
        case S_IFLNK: return "a symbolic link"
        default: return "a special file"
        }
    }

    static func isRegular(_ mode: mode_t) -> Bool { mode & S_IFMT == S_IFREG }
    static func isDirectory(_ mode: mode_t) -> Bool { mode & S_IFMT == S_IFDIR }

    /// Writes every byte, retrying on interruption and short writes.
    static func writeAll(_ descriptor: Int32, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = systemWrite(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                offset += written
            }
            return true
        }
    }
}

/// POSIX write(2), named apart from the library's `write` methods.
private func systemWrite(_ descriptor: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(descriptor, bytes, count)
    #elseif canImport(Musl)
    return Musl.write(descriptor, bytes, count)
    #else
    return Darwin.write(descriptor, bytes, count)
    #endif
}
