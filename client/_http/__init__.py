"""The request path: pooled httpx with retries (``transport``, ``policy``), credentials (``auth``),
the JSON wire format (``wire``), micro-batching and chunked sending (``batching``, ``sending``),
and the sync portal loop (``sync``). Knows nothing of signatures or chat formats."""
