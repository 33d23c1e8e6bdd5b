"""The HTTP face of the service: the aiohttp app (``app``), its handlers, the server limits, and ``openapi.yaml``."""
