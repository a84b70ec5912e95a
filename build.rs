//! Build script: the only place that probes Python at build time.
//!
//! pyo3 links against the libpython of the interpreter it finds (`PYO3_PYTHON`,
//! else `python3` on PATH). With a shared libpython outside the loader's
//! default path (pyenv), the binary would otherwise pick up whatever
//! `libpython3.x.so` the system has at run time, a different patch release
//! with a different stdlib. An rpath pins the one we built against.
fn main() {
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo:rerun-if-env-changed=PYO3_BUILD_EXTENSION_MODULE");
    if std::env::var_os("CARGO_FEATURE_PYTHON").is_some() {
        pyo3_build_config::use_pyo3_cfgs();
        // The wheel's extension module (maturin sets
        // PYO3_BUILD_EXTENSION_MODULE) is loaded by a running python and
        // links no libpython: no rpath for it.
        if std::env::var_os("CARGO_FEATURE_PYMODULE").is_none() {
            pyo3_build_config::add_libpython_rpath_link_args();
        }
        let cfg = pyo3_build_config::get();
        let version = format!("{}.{}", cfg.version().major, cfg.version().minor);
        println!("cargo:rustc-env=EDGE_PYTHON_BUILD_VERSION={version}");
        println!(
            "cargo:rustc-env=EDGE_PYTHON_LIBDIR={}",
            cfg.lib_dir().map(|d| d.to_string()).unwrap_or_default()
        );
    }
}
