"""Run one peer command: ``python -m peers <peer_module> probe|enqueue|worker ...``.

The peer module is imported under its real name (``peers.peer_rq``), never as
``__main__``, so that job functions get the same names in the producer as in the worker
(rq and huey name tasks after their module).
"""

from __future__ import annotations

import importlib
import sys

from peers import common

if len(sys.argv) < 2 or not sys.argv[1].startswith("peer_"):
    raise SystemExit("usage: python -m peers peer_<name> probe|enqueue|worker [options]")
module = importlib.import_module(f"peers.{sys.argv[1]}")
common.main(module.ADAPTER, sys.argv[2:])
