"""Fails at import time, like an app with a missing dependency."""
raise ImportError("importerror_app: simulated missing dependency 'nonexistent_dep_41b7'")
