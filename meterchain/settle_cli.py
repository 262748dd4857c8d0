"""``meterchain settle``: the settlement's commands, wired to read a replica's storage.

``settlement.cli`` registers the commands; this module hands it the opener of a
replica's storage (:func:`meterchain.settle_source.replica_storage`), so that
``settle run|verify|prove`` also take ``--config replica.toml`` while ``settlement/``
itself never imports ``replica/``, and the recorder of verification results
(``settle verify --record``), and adds ``settle publish``
(:mod:`meterchain.settle_publish`). The replica is imported only when used.
"""

from __future__ import annotations

from typing import Any

from meterchain.settle_publish import add_publish, record
from meterchain.settle_source import replica_storage
from settlement import cli


def register(sub: Any) -> None:
    """Add ``settle`` (with ``--config``, ``--record`` and ``publish``) to the
    dispatcher's sub-commands."""
    add_publish(cli.register(sub, storage_source=replica_storage, recorder=record))
