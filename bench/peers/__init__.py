"""Peer adapters of the genqueue benchmark; see common.py and run.py."""
