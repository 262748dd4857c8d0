"""Energy-community settlement: sharing rules, local markets, signed settlement documents.

Pure where it decides: every rule in :mod:`settlement.rules` is a function of one
interval's inputs; :mod:`settlement.engine` runs a rule over a period;
:mod:`settlement.document` encodes, signs and verifies the result
(``docs/settlement.md`` is the normative description). Interval energy comes in as
one document (:mod:`settlement.source`), read from a file or, by
:mod:`settlement.replica_source`, from a replica's meter-data HTTP API. Imports:
ledger and keyfiles only.
"""
