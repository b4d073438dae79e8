"""What a model accepts and how caller input becomes it: signatures from the registry or an
endpoint's OpenAPI document (``signatures``, ``openapi``), input shapes (``inputs``), and
validation with conversion against a signature (``validate``). Knows nothing of where a request goes."""
