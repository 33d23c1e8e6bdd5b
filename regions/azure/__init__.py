"""A region on an Azure Blob Storage container (azure-storage-blob aio), tested against Azurite.

:mod:`.driver` is the region; :mod:`.listing` turns List Blobs pages into
entries in UTF-8 order; :mod:`._fast` holds the one speed trick, beside the
plain call it must equal; :mod:`.credential` the Microsoft Entra ID token
credentials (an account key or a connection string needs none).
"""

from .driver import AzureRegion

__all__ = ["AzureRegion"]
