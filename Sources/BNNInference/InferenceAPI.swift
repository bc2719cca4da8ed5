import BNN
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

// The C inference API declared in include/bnn_inference.h. Every function catches every Swift error and
// checks every pointer and count before use: a C caller gets a status code and a message, never a trap.

/// Status codes of include/bnn_inference.h.
public enum InferenceStatus: Int32, Sendable {
    case ok = 0
    case invalidArgument = 1
    case ioError = 2
    case invalidModel = 3
    case runFailed = 4
}

/// What a `bnn_model *` points to: the engine and the graph's input shape.
final class InferenceModel {
    let engine: PackedEngine
    let input: [Int]

    init(engine: PackedEngine) {
        self.engine = engine
        input = engine.model.graph.input
    }
}

// MARK: Thread-local error message

/// One key for every thread's last message (a malloc'd C string, freed when the thread ends).
private let lastErrorKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { pointer in free(pointer) }
    return key
}()

/// Replaces the calling thread's message (a failed call) or clears it (a successful one).
private func setLastError(_ message: String) {
    let previous = pthread_getspecific(lastErrorKey)
    pthread_setspecific(lastErrorKey, message.isEmpty ? nil : UnsafeMutableRawPointer(strdup(message)))
    free(previous)
}

/// Records `message` for `bnn_last_error` and returns `status` as the C code.
private func fail(_ status: InferenceStatus, _ message: String) -> Int32 {
    setLastError(message)
    return status.rawValue
}

private func succeed() -> Int32 {
    setLastError("")
    return InferenceStatus.ok.rawValue
}

private func model(_ handle: OpaquePointer?) -> InferenceModel? {
    handle.map { Unmanaged<InferenceModel>.fromOpaque(UnsafeRawPointer($0)).takeUnretainedValue() }
}

/// The whole file at `path`, read with POSIX calls so that any byte string is a usable path and errors carry
/// errno's text.
private func readFile(_ path: String) throws -> Data {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else { throw PackedModelError("\(path): cannot open: \(String(cString: strerror(errno)))") }
    defer { close(descriptor) }
    var info = stat()
    guard fstat(descriptor, &info) == 0 else {
        throw PackedModelError("\(path): cannot read its size: \(String(cString: strerror(errno)))")
    }
    guard (info.st_mode & S_IFMT) == S_IFREG else { throw PackedModelError("\(path): not a regular file") }
    var bytes = Data()
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        if count < 0 {
            if errno == EINTR { continue }
            throw PackedModelError("\(path): read failed after \(bytes.count) bytes: \(String(cString: strerror(errno)))")
        }
        if count == 0 { return bytes }
        bytes.append(contentsOf: chunk[0..<count])
    }
}

// MARK: The C functions

/// `int bnn_model_open(const char *path, bnn_model **out)`: reads, checks and prepares a packed model.
@_cdecl("bnn_model_open")
public func bnn_model_open(_ path: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    out?.pointee = nil
    guard let path else { return fail(.invalidArgument, "bnn_model_open: path is NULL") }
    guard let out else { return fail(.invalidArgument, "bnn_model_open: out is NULL") }
    let name = String(cString: path)
    let data: Data
    do {
        data = try readFile(name)
    } catch {
        return fail(.ioError, "\(error)")
    }
    do {
        let engine = try PackedEngine(model: PackedModel.parse(data, path: name))
        out.pointee = OpaquePointer(Unmanaged.passRetained(InferenceModel(engine: engine)).toOpaque())
        return succeed()
    } catch let error as PackedModelError {
        return fail(.invalidModel, error.message.hasPrefix(name) ? error.message : "\(name): \(error.message)")
    } catch {
        return fail(.invalidModel, "\(name): \(error)")
    }
}

/// `int64_t bnn_model_input_size(const bnn_model *)`: floats per image, -1 for NULL.
@_cdecl("bnn_model_input_size")
public func bnn_model_input_size(_ handle: OpaquePointer?) -> Int64 {
    guard let model = model(handle) else {
        setLastError("bnn_model_input_size: model is NULL")
        return -1
    }
    return Int64(model.engine.inputSize)
}

/// `int bnn_model_input_shape(const bnn_model *, int64_t *height, int64_t *width, int64_t *channels)`.
@_cdecl("bnn_model_input_shape")
public func bnn_model_input_shape(
    _ handle: OpaquePointer?, _ height: UnsafeMutablePointer<Int64>?, _ width: UnsafeMutablePointer<Int64>?,
    _ channels: UnsafeMutablePointer<Int64>?
) -> Int32 {
    guard let model = model(handle) else { return fail(.invalidArgument, "bnn_model_input_shape: model is NULL") }
    height?.pointee = Int64(model.input[0])
    width?.pointee = Int64(model.input[1])
    channels?.pointee = Int64(model.input[2])
    return succeed()
}

/// `int64_t bnn_model_classes(const bnn_model *)`: logits per image, -1 for NULL.
@_cdecl("bnn_model_classes")
public func bnn_model_classes(_ handle: OpaquePointer?) -> Int64 {
    guard let model = model(handle) else {
        setLastError("bnn_model_classes: model is NULL")
        return -1
    }
    return Int64(model.engine.classes)
}

/// `int bnn_model_run(bnn_model *, const float *images_nhwc, int64_t n, float *logits)`.
@_cdecl("bnn_model_run")
public func bnn_model_run(
    _ handle: OpaquePointer?, _ images: UnsafePointer<Float>?, _ count: Int64, _ logits: UnsafeMutablePointer<Float>?
) -> Int32 {
    guard let model = model(handle) else { return fail(.invalidArgument, "bnn_model_run: model is NULL") }
    guard let images else { return fail(.invalidArgument, "bnn_model_run: images_nhwc is NULL") }
    guard let logits else { return fail(.invalidArgument, "bnn_model_run: logits is NULL") }
    guard count >= 1 else { return fail(.invalidArgument, "bnn_model_run: n is \(count), must be at least 1") }
    let engine = model.engine
    let (floats, overflow) = Int(count).multipliedReportingOverflow(by: engine.inputSize)
    let (outputs, outputOverflow) = Int(count).multipliedReportingOverflow(by: engine.classes)
    guard !overflow, !outputOverflow, floats <= Int.max / MemoryLayout<Float>.stride else {
        return fail(.invalidArgument, "bnn_model_run: n = \(count) images of \(engine.inputSize) floats is too many")
    }
    do {
        let result = try engine.logits(images: UnsafeBufferPointer(start: images, count: floats), count: Int(count))
        guard result.count == outputs else {
            return fail(.runFailed, "bnn_model_run: the engine returned \(result.count) logits, expected \(outputs)")
        }
        result.withUnsafeBufferPointer { logits.update(from: $0.baseAddress!, count: outputs) }
        return succeed()
    } catch {
        return fail(.runFailed, "bnn_model_run: \(error)")
    }
}

/// `void bnn_model_close(bnn_model *)`: releases the model (NULL is allowed).
@_cdecl("bnn_model_close")
public func bnn_model_close(_ handle: OpaquePointer?) {
    guard let handle else { return }
    Unmanaged<InferenceModel>.fromOpaque(UnsafeRawPointer(handle)).release()
}

/// `const char *bnn_last_error(void)`: the calling thread's last failure, "" after a success.
@_cdecl("bnn_last_error")
public func bnn_last_error() -> UnsafePointer<CChar> {
    if let message = pthread_getspecific(lastErrorKey) {
        return UnsafePointer(message.assumingMemoryBound(to: CChar.self))
    }
    return staticText("")
}

/// `const char *bnn_status_message(int status)`: a fixed description of a code.
@_cdecl("bnn_status_message")
public func bnn_status_message(_ status: Int32) -> UnsafePointer<CChar> {
    switch InferenceStatus(rawValue: status) {
    case .ok: staticText("ok")
    case .invalidArgument: staticText("invalid argument")
    case .ioError: staticText("the file cannot be read")
    case .invalidModel: staticText("not a valid packed model")
    case .runFailed: staticText("the kernels failed while running")
    case nil: staticText("unknown status code")
    }
}

/// `int bnn_set_threads(int threads)`: OpenMP threads of the kernels, process-wide.
@_cdecl("bnn_set_threads")
public func bnn_set_threads(_ threads: Int32) -> Int32 {
    do {
        try Kernels.setThreads(Int(threads))
        return succeed()
    } catch {
        return fail(.invalidArgument, "bnn_set_threads: \(error)")
    }
}

/// A string literal's bytes, which live (NUL-terminated) for the whole run of the program.
private func staticText(_ text: StaticString) -> UnsafePointer<CChar> {
    UnsafeRawPointer(text.utf8Start).assumingMemoryBound(to: CChar.self)
}
