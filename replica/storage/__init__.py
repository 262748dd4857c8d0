"""Replica storage backends behind one interface (:class:`~replica.storage.base.Storage`)."""

from replica.storage.base import (
    ForkRecord,
    GatewayRecord,
    Storage,
    StoredBlock,
    TokenRecord,
    open_storage,
)

__all__ = ["ForkRecord", "GatewayRecord", "Storage", "StoredBlock", "TokenRecord",
           "open_storage"]
