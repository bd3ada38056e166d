"""The HTTP API of a node: one module per family of endpoints, each declaring its endpoints
(`endpoint.Endpoint`); `catalog` gathers them and binds them into routes, `openapi` documents
them."""
