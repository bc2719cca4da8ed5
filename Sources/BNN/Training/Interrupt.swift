import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Set by the SIGINT handler, read by the training loop: a lock-free atomic, the only kind of shared state
/// a signal handler may touch.
private let interruptRequested = Atomic<Bool>(false)

/// Ctrl-C during training: the first SIGINT only raises a flag, so the loop can finish its step, save a
/// checkpoint and exit cleanly; the handler resets itself on delivery (SA_RESETHAND), so a second Ctrl-C
/// ends the process at once as usual.
public enum Interrupt {
    /// Whether a SIGINT arrived since `install()` or `reset()`.
    public static var isRequested: Bool { interruptRequested.load(ordering: .relaxed) }

    /// Clears the flag.
    public static func reset() { interruptRequested.store(false, ordering: .relaxed) }

    /// Raises the flag as SIGINT would (for callers with another way to ask for a stop, and for tests).
    public static func request() { interruptRequested.store(true, ordering: .relaxed) }

    /// Installs the one-shot SIGINT handler and clears the flag; returns false if the system refused. With
    /// `terminate`, SIGTERM and SIGUSR1 raise the flag too: Open MPI's mpirun turns Ctrl-C into SIGTERM for its ranks
    /// (and SIGKILL a second later), and forwards SIGUSR1 as it is, without killing anything.
    @discardableResult
    public static func install(terminate: Bool = false) -> Bool {
        reset()
        return installHandler(SIGINT) && (!terminate || (installHandler(SIGTERM) && installHandler(SIGUSR1)))
    }

    private static func installHandler(_ signal: Int32) -> Bool {
        var action = sigaction()
        #if canImport(Glibc)
        action.__sigaction_handler.sa_handler = interruptHandler
        #else
        action.__sigaction_u.__sa_handler = interruptHandler
        #endif
        action.sa_flags = Int32(truncatingIfNeeded: SA_RESETHAND)   // 0x80000000 on Linux
        sigemptyset(&action.sa_mask)
        return sigaction(signal, &action, nil) == 0
    }

    /// Restores the default SIGINT, SIGTERM and SIGUSR1 behaviour (end the process).
    public static func uninstall() {
        uninstallHandler(SIGINT)
        uninstallHandler(SIGTERM)
        uninstallHandler(SIGUSR1)
    }

    private static func uninstallHandler(_ signal: Int32) {
        var action = sigaction()
        #if canImport(Glibc)
        action.__sigaction_handler.sa_handler = nil   // SIG_DFL is the null handler
        #else
        action.__sigaction_u.__sa_handler = nil
        #endif
        sigemptyset(&action.sa_mask)
        sigaction(signal, &action, nil)
    }
}

/// Only stores to the atomic: nothing else is async-signal-safe.
private func interruptHandler(_ signal: Int32) {
    interruptRequested.store(true, ordering: .relaxed)
}
