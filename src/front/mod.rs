//! The front process: tokio runtime built after the fork, hyper server,
//! static files, request buffering and dispatch to workers.

pub mod body;
pub mod static_files;
