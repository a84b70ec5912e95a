"""The setup step (every run, idempotent): nginx and wrk from apt, the venv
and its packages, the edge release build, static files, the TLS certificate,
the open-loop generator; and the versions and machine for the report."""

import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import common
from .common import (CERT, FILES, KEY, LOADGEN, LOADGEN_SRC, LOGS, OUT, REPO,
                     TLS_DIR, VENV, log, note, sh)
from .scenarios import ASGI_STACK, STATIC_SIZES

PY_PACKAGES = ["gunicorn", "granian", "flask", "django",
               "fastapi", "uvicorn", "httptools", "uvloop"]
PY_IMPORTS = "gunicorn, granian, flask, django, fastapi, uvicorn, httptools, uvloop"
# Readiness marker of the venv: its content must equal VENV_SPEC, otherwise
# (older venv, or PY_PACKAGES changed) `pip install PY_PACKAGES` runs again,
# which adds what is missing and leaves what is installed as it is. Bump
# VENV_VERSION to force that once more.
VENV_VERSION = 2  # 2: + fastapi uvicorn httptools uvloop (ASGI scenarios)
VENV_MARK = VENV / ".bench-packages"
VENV_SPEC = f"{VENV_VERSION} {' '.join(PY_PACKAGES)}\n"
UWSGI_FAILED_MARK = VENV / ".uwsgi-install-failed"


def setup_apt():
    missing = [t for t in ("nginx", "wrk") if not shutil.which(t)]
    if not missing:
        return True
    if common.OFFLINE:
        note(f"missing {', '.join(missing)} (BENCH_OFFLINE=1: no apt-get)")
        return False
    if os.geteuid() != 0:
        note(f"missing {', '.join(missing)} and not root: install them with apt")
        return False
    log(f"installing {' '.join(missing)} with apt-get ...")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = sh(["apt-get", "update", "-qq"], env=env)
    if r.returncode == 0:
        r = sh(["apt-get", "install", "-y", "-qq", "nginx", "wrk"], env=env)
    if r.returncode != 0:
        note(f"apt-get failed: {(r.stdout + r.stderr).strip()[-300:]}")
    return all(shutil.which(t) for t in ("nginx", "wrk"))


def setup_venv(python, need_uwsgi=True):
    """The venv with every arm's packages; True if uwsgi is usable. uwsgi
    (a C build) is installed only when a chosen scenario has a uwsgi arm."""
    vpy = VENV / "bin" / "python"
    if common.OFFLINE:
        return offline_venv(vpy)
    if not vpy.exists():
        log(f"creating venv {VENV} with {python} ...")
        r = sh([python, "-m", "venv", str(VENV)])
        if r.returncode != 0:
            sys.exit(f"cannot create the venv: {r.stderr}")
    marked = VENV_MARK.exists() and VENV_MARK.read_text() == VENV_SPEC
    if not marked or sh([str(vpy), "-c", f"import {PY_IMPORTS}"]).returncode != 0:
        log(f"pip install {' '.join(PY_PACKAGES)} ...")
        r = sh([str(vpy), "-m", "pip", "install", "-q", *PY_PACKAGES])
        if r.returncode != 0:
            sys.exit(f"pip install failed:\n{r.stdout}{r.stderr}")
        VENV_MARK.write_text(VENV_SPEC)
    asgi_stack(vpy)
    if not need_uwsgi:
        return (VENV / "bin" / "uwsgi").exists()
    if not (VENV / "bin" / "uwsgi").exists():
        if UWSGI_FAILED_MARK.exists():
            note("uwsgi skipped: its install failed before "
                 f"(delete {UWSGI_FAILED_MARK.relative_to(REPO)} to retry)")
            return False
        log("pip install uwsgi (compiles C; takes a minute) ...")
        r = sh([str(vpy), "-m", "pip", "install", "-q", "uwsgi"])
        if r.returncode != 0:
            UWSGI_FAILED_MARK.write_text(r.stdout + r.stderr)
            note(f"uwsgi skipped: pip install uwsgi failed: "
                 f"{(r.stdout + r.stderr).strip()[-300:]}")
            return False
    return True


def offline_venv(vpy):
    """BENCH_OFFLINE=1: VENV (BENCH_VENV) is used as it is; nothing is
    installed. Missing packages are noted (their arms fail to start and are
    reported as skipped). True if uwsgi is there."""
    if not vpy.exists():
        note(f"no {vpy} (BENCH_OFFLINE=1: no venv is made); the Python arms will fail")
        return False
    code = ("import importlib.util as u\n"
            f"print(' '.join(m for m in {PY_IMPORTS.split(', ')!r} if u.find_spec(m) is None))")
    missing = sh([str(vpy), "-c", code]).stdout.split()
    if missing:
        log(f"offline: not in {VENV}: {', '.join(missing)} (not installed: BENCH_OFFLINE=1)")
    asgi_stack(vpy)
    return (VENV / "bin" / "uwsgi").exists()


def asgi_stack(vpy):
    """What uvicorn, the UvicornWorker and granian's ASGI interface will run
    on (ASGI_STACK): httptools and uvloop when the venv has them."""
    def has(mod):
        return sh([str(vpy), "-c", f"import {mod}"]).returncode == 0
    ASGI_STACK["http"] = "httptools" if has("httptools") else "h11"
    ASGI_STACK["loop"] = "uvloop" if has("uvloop") else "asyncio"
    # uvicorn 0.30+ deprecates uvicorn.workers for the uvicorn-worker
    # package; use whichever the venv has (the former when both).
    if not has("uvicorn.workers") and has("uvicorn_worker"):
        ASGI_STACK["worker"] = "uvicorn_worker.UvicornWorker"


def setup_edge(args):
    """Returns (path to a fresh edge binary, None) or (None, reason)."""
    if args.no_edge:
        return None, "--no-edge given"
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    # Absolute: edge is started from the run's temporary directory.
    binary = (Path(args.edge_bin) if args.edge_bin else target / "release" / "edge").resolve()
    if args.edge_bin or args.no_build:
        if binary.is_file() and os.access(binary, os.X_OK):
            if not args.edge_bin:
                note(f"edge not rebuilt (--no-build); using {binary}")
            return binary, None
        return None, f"no edge binary at {binary}"
    if not shutil.which("cargo"):
        return None, "cargo not found, cannot build edge"
    log("cargo build --release (niced) ...")
    t = time.time()
    with open(LOGS / "cargo-build.log", "w") as f:
        r = subprocess.run(["nice", "-n", "10", "cargo", "build", "--release"],
                           cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        tail = (LOGS / "cargo-build.log").read_text().strip().splitlines()[-3:]
        return None, ("`cargo build --release` failed (bench/out/logs/cargo-build.log): "
                      + " / ".join(tail))
    log(f"  built in {time.time() - t:.0f}s")
    if not binary.is_file():
        return None, f"cargo build succeeded but {binary} is missing"
    return binary, None


def setup_edge_pip(args):
    """Build the edge-server wheel for the bench venv's python and install
    it there (VENV/bin/edge). None, or why the edge-pip arm cannot run."""
    exe = VENV / "bin" / "edge"
    if args.no_build or args.edge_bin:
        return None if exe.exists() else f"no {exe} (--no-build: wheel not built)"
    log(".ci/build-wheels for the bench venv (niced) ...")
    t = time.time()
    wheels = OUT / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    with open(LOGS / "wheel-build.log", "w") as f:
        r = subprocess.run(["nice", "-n", "10", str(REPO / "scripts" / "build-wheels"),
                            "-o", str(wheels), str(VENV / "bin" / "python")],
                           cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    found = sorted(wheels.glob("edge_server-*.whl"))
    if r.returncode != 0 or not found:
        return ".ci/build-wheels failed (bench/out/logs/wheel-build.log)"
    r = sh([str(VENV / "bin" / "pip"), "install", "--disable-pip-version-check", "-q",
            "--force-reinstall", "--no-deps", str(found[0])])
    if r.returncode != 0:
        return f"pip install {found[0].name} failed: {(r.stdout + r.stderr).strip()[-300:]}"
    log(f"  built and installed in {time.time() - t:.0f}s")
    return None


def make_cert():
    """A self-signed P-256 certificate for 127.0.0.1/localhost, for this run
    (PKCS#8 key: granian reads no other format). None, or why it failed."""
    TLS_DIR.mkdir(parents=True, exist_ok=True)
    r = sh(["openssl", "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(KEY), "-out", str(CERT)])
    if r.returncode != 0:
        return f"openssl req failed: {(r.stdout + r.stderr).strip()[-300:]}"
    return None


def build_loadgen():
    """cc -O2 bench/loadgen.c into bench/out/. None, or why it failed."""
    if LOADGEN.exists() and LOADGEN.stat().st_mtime >= LOADGEN_SRC.stat().st_mtime:
        return None
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return "no C compiler (cc) to build bench/loadgen.c"
    OUT.mkdir(parents=True, exist_ok=True)
    r = sh([cc, "-O2", "-Wall", "-o", str(LOADGEN), str(LOADGEN_SRC)])
    if r.returncode != 0:
        return f"cc bench/loadgen.c failed: {(r.stdout + r.stderr).strip()[-300:]}"
    return None


def make_static_files():
    FILES.mkdir(parents=True, exist_ok=True)
    for k, n in STATIC_SIZES.items():
        p = FILES / f"{k}.bin"
        if not p.exists() or p.stat().st_size != n:
            p.write_bytes(os.urandom(n))


def versions(edge_bin):
    v = {}
    vpy = VENV / "bin" / "python"
    # No venv when no chosen arm needed one: the packages are then "-".
    vpy = str(vpy if vpy.exists() else sys.executable)
    code = ("import importlib.metadata as m, sys\n"
            "for p in ['gunicorn','granian','uWSGI','flask','django',\n"
            "          'fastapi','starlette','uvicorn','httptools','uvloop']:\n"
            "  try: print(p, m.version(p))\n"
            "  except Exception: print(p, '-')\n"
            "print('python', sys.version.split()[0])")
    for line in sh([vpy, "-c", code]).stdout.splitlines():
        k, _, val = line.partition(" ")
        v[k] = val
    v["nginx"] = sh(["nginx", "-v"]).stderr.strip().split("/")[-1]
    v["wrk"] = (sh(["wrk", "-v"]).stdout.split() or ["?", "?"])[1]
    kit_rev = REPO / "KIT_REVISION"  # the offline kit: no git, the revision it was built from
    if kit_rev.exists():
        rev, dirty = kit_rev.read_text().strip(), ""
    elif shutil.which("git"):
        rev = sh(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]).stdout.strip()
        dirty = sh(["git", "-C", str(REPO), "status", "--porcelain", "--", "src", "Cargo.toml"]).stdout.strip()
    else:
        rev, dirty = "?", ""
    v["edge"] = (f"{rev}{'+dirty' if dirty else ''}" if edge_bin else "not run")
    return v


def machine():
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}"
