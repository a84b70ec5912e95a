//! edge: nginx and gunicorn in one binary.
#![deny(unsafe_code)]

pub mod cli;
pub mod config;
pub mod front;
