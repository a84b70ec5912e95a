"""Lifecycle hooks for tests/operations.rs ([app] hooks = "ops_hooks"):
each prints one line to stderr with the worker's pid as edge reports it
(worker.pid), as the process sees it (os.getpid()) and the slot."""
import os
import sys


def _say(name, worker):
    print("ops_hooks: %s worker.pid=%d getpid=%d slot=%d"
          % (name, worker.pid, os.getpid(), worker.slot),
          file=sys.stderr, flush=True)


def post_fork(worker):
    _say("post_fork", worker)


def post_worker_init(worker):
    _say("post_worker_init", worker)


def worker_exit(worker):
    _say("worker_exit", worker)
