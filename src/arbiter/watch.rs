//! `--reload` / `--dev`: watch the app's Python files and the config file
//! with inotify, polled by the arbiter's loop. (The `notify` crate would
//! start a thread; the arbiter must stay single-threaded to fork safely.)

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tracing::{debug, info, warn};

use crate::config::Config;

/// Directories watched at most (a whole home directory on `sys.path`
/// should not exhaust the inotify limits).
const MAX_DIRS: usize = 4096;

pub struct Watcher {
    inotify: Inotify,
    dirs: HashMap<WatchDescriptor, PathBuf>,
    config_file: Option<PathBuf>,
}

fn skip_dir(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.starts_with('.')
        || name == "__pycache__"
        || name == "node_modules"
        || name == "target"
        || path.join("pyvenv.cfg").exists()
}

impl Watcher {
    pub fn new(config: &Config) -> std::io::Result<Self> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        let mut w = Watcher {
            inotify,
            dirs: HashMap::new(),
            config_file: config.source.clone(),
        };
        let mut roots: Vec<PathBuf> = config.app.pythonpath.clone();
        if let Some(dir) = &config.app.chdir {
            roots.push(dir.clone());
        }
        if let Some(parent) = config.source.as_ref().and_then(|p| p.parent()) {
            w.add(parent, false);
        }
        for root in roots {
            w.add_tree(&root);
        }
        info!(
            dirs = w.dirs.len(),
            "--reload: watching the app's source files"
        );
        Ok(w)
    }

    fn add(&mut self, dir: &Path, _recursive: bool) {
        if self.dirs.len() >= MAX_DIRS || self.dirs.values().any(|d| d == dir) {
            return;
        }
        let flags = AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE;
        match self.inotify.add_watch(dir, flags) {
            Ok(wd) => {
                self.dirs.insert(wd, dir.to_path_buf());
            }
            Err(e) => debug!(dir = %dir.display(), error = %e, "cannot watch"),
        }
    }

    fn add_tree(&mut self, root: &Path) {
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            if self.dirs.len() >= MAX_DIRS {
                warn!(
                    limit = MAX_DIRS,
                    "--reload: too many directories; not watching them all"
                );
                return;
            }
            self.add(&dir, true);
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.flatten() {
                    let p = e.path();
                    if e.file_type().is_ok_and(|t| t.is_dir()) && !skip_dir(&p) {
                        stack.push(p);
                    }
                }
            }
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// Drain pending events; true if a Python file or the config changed.
    pub fn changed(&mut self) -> bool {
        let mut changed = false;
        let mut new_dirs: Vec<PathBuf> = Vec::new();
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            for ev in events {
                let Some(dir) = self.dirs.get(&ev.wd) else {
                    continue;
                };
                let Some(name) = ev.name.as_ref() else {
                    continue;
                };
                let path = dir.join(name);
                if ev.mask.contains(AddWatchFlags::IN_ISDIR) {
                    if ev.mask.contains(AddWatchFlags::IN_CREATE) && !skip_dir(&path) {
                        new_dirs.push(path);
                    }
                    continue;
                }
                let is_py = path.extension().is_some_and(|e| e == "py");
                let is_config = self.config_file.as_deref() == Some(path.as_path());
                if is_py || is_config {
                    debug!(file = %path.display(), "changed");
                    changed = true;
                }
            }
        }
        for d in new_dirs {
            self.add_tree(&d);
        }
        changed
    }
}
