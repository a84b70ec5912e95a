//! With `server.user` / `server.group`: what the front and the workers
//! must still be able to open after they have dropped root gets their
//! owner here, in the arbiter (which keeps root, see `docs/ARCHITECTURE.md`).
//!
//! - the access and error log files (created if missing), so that a child
//!   can reopen them after a rotation (USR1);
//! - `limits.temp_dir`, where the front spools bodies;
//! - the control socket, so that `edge status` works for that user too.

use std::path::Path;

use nix::unistd::chown;
use tracing::warn;

use crate::config::log::LogTarget;
use crate::config::server::RunAs;
use crate::config::Config;

/// Give the files and folders of `config` that the children write to
/// `config.server.run_as`. Called before each generation's children fork.
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
}

/// chown `path` to `who`, or say why not.
pub fn give(who: &RunAs, what: &str, path: &Path) {
    if let Err(e) = chown(path, Some(who.uid), Some(who.gid)) {
        warn!(key = what, path = %path.display(), uid = %who.uid, gid = %who.gid, error = %e, "cannot give to server.user / server.group");
    }
}
