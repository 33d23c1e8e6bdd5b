"""A region on an Azure Blob Storage container (azure-storage-blob aio), tested against Azurite.

:mod:`.driver` is the region; :mod:`.listing` turns List Blobs pages into
entries in UTF-8 order; :mod:`._fast` holds the one speed trick, beside the
plain call it must equal.
"""

from .driver import AzureRegion

__all__ = ["AzureRegion"]
