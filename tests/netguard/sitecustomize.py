"""Loaded by every Python subprocess the tests start (this directory is first on PYTHONPATH)."""

import netguard

netguard.install()
