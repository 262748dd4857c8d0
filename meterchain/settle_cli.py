"""``meterchain settle``: the settlement's commands, wired to read a replica's storage.

``settlement.cli`` registers the commands; this module hands it the opener of a
replica's storage (:func:`meterchain.settle_source.replica_storage`), so that
``settle run|verify|prove`` also take ``--config replica.toml`` while ``settlement/``
itself never imports ``replica/``. The replica is imported only when ``--config`` is used.
"""

from __future__ import annotations

from typing import Any

from meterchain.settle_source import replica_storage
from settlement import cli


def register(sub: Any) -> None:
    """Add ``settle`` (with ``--config``) to the dispatcher's sub-commands."""
    cli.register(sub, storage_source=replica_storage)
