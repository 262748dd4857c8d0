"""Published community settlements on the replica: intake checks, tables, read API.

A settlement (``docs/settlement.md``) reaches the replica through
``meterchain settle publish`` (the wiring package); the replica stores the signed
document, the members' statements and the community's per-interval flows as given and
serves them back byte for byte (``docs/replica-api.md``, section "Settlements"). It
checks sizes, shape and the operator's signature, never the settlement's arithmetic:
``meterchain settle verify`` does that, and its results are recorded here too.
"""
