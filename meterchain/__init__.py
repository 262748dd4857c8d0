"""The ``meterchain`` command and the demo: the one package that wires every other.

``ledger`` (the pure core) <- ``keyfiles`` <- ``drivers`` <- ``agent``; ``ledger`` <-
``replica``. Nothing below imports this package; it imports them all.
"""
