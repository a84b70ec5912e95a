"""edge's benchmark harness, behind `bench/run` (the manual: bench/README.md).

    scenarios.py  what is measured: arms, scenarios, the attack / rate / ASGI knobs
    setup.py      the setup step: apt tools, the venv, the edge build, files, cert
    arms.py       how each arm's server starts (pinned), and the readiness probes
    loadgen.py    the load generators: wrk, bench/loadgen.c, bench/slowloris.py
    measure.py    one measured run, the in-process baseline, the latency rate
    procs.py      process groups of the arms, /proc accounting, clean-up
    report.py     the tables, goal lines and bench/out/latest.{md,json}
    summary.py    one side-by-side table from latest.json files (the kit's last step)
    common.py     paths, environment knobs, small helpers
    cli.py        the command line and the run: setup, interleaved rounds, report

Only the standard library is used.
"""
