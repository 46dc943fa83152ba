"""The aiohttp server: the Closient-compatible API under /scanner/api/v1 and the web UI."""
