"""What the tests share and are not tests themselves: servers, stores, fakes and harnesses.

* ``stack``: the dev stack's servers as tests reach them (required, never optional), and stopping
  or pausing one of them.
* ``pg``: a fresh PostgreSQL schema on the stack's server for a journal.
* ``clouds``: raw access to what Azurite and Swift hold, and the service in process over them.
* ``faulty``: a Region wrapper that can be switched off or made to hang; the service over two of them.
* ``errorproxy``: a real HTTP proxy in front of one store that can be told to answer 500.
* ``crashdriver``: the crash test's harness (the service as a subprocess, a slow link, a client ledger).
* ``served``: ``replicator serve`` as a subprocess, a raw HTTP/1.1 client, the local regions on disk.
* ``localstore``: reach behind a LocalRegion to change or count what it stored.
* ``seed``: seed regions with what the service writes (reconciler tests).
* ``tinkkeys``: Google's Tink set up to read our ciphertext.
"""
