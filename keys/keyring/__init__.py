"""The local keyring file, split by job.

* ``state``: the file's content as typed, immutable values;
* ``codec``: its one encoding (the ``replicator-keyring/1`` JSON);
* ``statefile``: reading, atomic replacement and the cross-process lock;
* ``kek``: KEKs from a passphrase, a key file or a key service, and keys sealed under them;
* ``deks``: DEK lifecycle (create, destroy, reinstate) as state transitions;
* ``rotation``: KEK rotation, its link, and finishing it;
* ``cache``: the bounded in-memory LRU of unwrapped keys (the key store's too);
* ``local``: ``LocalKeyring``, the ``KeyProvider`` that drives them.
"""

from keys.keyring.cache import DEFAULT_CACHE_SIZE
from keys.keyring.codec import FORMAT
from keys.keyring.local import KeyringExists, LocalKeyring
from keys.keyring.rotation import RotationUnfinished
from keys.keyring.state import KeyringState

__all__ = ["DEFAULT_CACHE_SIZE", "FORMAT", "KeyringExists", "KeyringState", "LocalKeyring", "RotationUnfinished"]
