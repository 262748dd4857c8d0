"""Energy-community settlement: sharing rules, local markets, signed settlement documents.

Pure where it decides: every rule in :mod:`settlement.rules` is a function of one
interval's inputs; :mod:`settlement.engine` runs a rule over a period;
:mod:`settlement.document` encodes, signs and verifies the result
(``docs/settlement.md`` is the normative description). Only
:mod:`settlement.source` reads files, and only the data-source adapter touches the
replica. Import direction: ledger core <- settlement.
"""
