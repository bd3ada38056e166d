"""The HTTP API of a node: one module per family of endpoints, and the OpenAPI document."""
