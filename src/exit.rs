//! Exit codes: the vocabulary every process role (arbiter, front, worker)
//! and `main` share, so that no role imports another to name one.
//!
//! The arbiter reads a child's code to tell a boot failure (give up or
//! back off) from a crash (replace it); `main` maps the arbiter's outcome
//! onto the same codes for the shell.

/// An orderly stop.
pub const OK: i32 = 0;
/// A failure at run time (a listener, a runtime, a crash loop of the front).
pub const FAILURE: i32 = 1;
/// Bad configuration or command line: `edge --check` and a start that stops
/// before anything listens (SPEC: "a non-zero exit before ...").
pub const CONFIG: i32 = 2;
/// A worker that could not import or start the app (gunicorn's
/// `WORKER_BOOT_ERROR`); also edge's own code when it gives up because the
/// workers do not boot.
pub const BOOT_ERROR: i32 = 3;

/// `code` as the process's exit status (0..=255).
pub fn status(code: i32) -> std::process::ExitCode {
    std::process::ExitCode::from(code as u8)
}
