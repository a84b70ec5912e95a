//! With `server.user` / `server.group`: what the front and the workers
//! must still be able to open after they have dropped root gets their
//! owner here, in the arbiter (which keeps root, see `docs/ARCHITECTURE.md`).
//!
//! - the access and error log files (created if missing), so that a child
//!   can reopen them after a rotation (USR1);
//! - `limits.temp_dir`, where the front spools bodies;
//! - `tls.acme.storage`, where the front stores the certificates it
//!   obtains and renews (the folder and everything in it);
//! - the control socket, so that `edge status` works for that user too.

use std::path::Path;

use nix::unistd::chown;
use tracing::warn;

use crate::config::log::LogTarget;
use crate::config::server::RunAs;
use crate::config::Config;

/// Give the files and folders of `config` that the children write to
/// `config.server.run_as`. Called before each generation's children fork,
/// and on USR1 before anyone reopens the log files.
pub fn prepare(config: &Config) {
    let Some(who) = &config.server.run_as else {
        return;
    };
    for (what, target) in [
        ("log.access", &config.log.access),
        ("log.error", &config.log.error),
    ] {
        if let LogTarget::File(path) = target {
            let created = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path);
            match created {
                Ok(_) => give(who, what, path),
                Err(e) => {
                    warn!(key = what, path = %path.display(), error = %e, "cannot create the log file")
                }
            }
        }
    }
    if let Some(dir) = &config.limits.temp_dir {
        give(who, "limits.temp_dir", dir);
    }
    if let Some(acme) = config.tls.as_ref().and_then(|t| t.acme.as_ref()) {
        if let Err(e) = std::fs::create_dir_all(&acme.storage) {
            warn!(key = "tls.acme.storage", path = %acme.storage.display(), error = %e, "cannot create the folder");
        }
        give_tree(who, "tls.acme.storage", &acme.storage, 4);
    }
}

/// chown `path` and, for a folder, what it holds, `depth` levels down;
/// symbolic links are not followed.
fn give_tree(who: &RunAs, what: &str, path: &Path, depth: u32) {
    give(who, what, path);
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for entry in entries.flatten() {
        match entry.file_type() {
            Ok(t) if t.is_dir() => give_tree(who, what, &entry.path(), depth - 1),
            Ok(t) if t.is_file() => give(who, what, &entry.path()),
            _ => {}
        }
    }
}

/// chown `path` to `who`, or say why not.
pub fn give(who: &RunAs, what: &str, path: &Path) {
    if let Err(e) = chown(path, Some(who.uid), Some(who.gid)) {
        warn!(key = what, path = %path.display(), uid = %who.uid, gid = %who.gid, error = %e, "cannot give to server.user / server.group");
    }
}
