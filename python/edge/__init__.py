"""edge: nginx + gunicorn in one server (the `edge-server` distribution).

Run it as `edge APP [flags]`, `edge --conf site.toml` or `python -m edge ...`:
the command line is the standalone binary's (gunicorn's flags, `--conf`,
`edge status`, `--check`, `--version`). The server itself is the Rust
extension module `edge._edge`; the process that runs it becomes edge's
arbiter, and its workers run the app in this interpreter, with this
environment's packages.
"""

from edge._edge import __version__

__all__ = ["__version__"]
