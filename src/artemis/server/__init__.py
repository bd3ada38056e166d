"""The I/O shell of a node: HTTP and WebSocket faces, background loops, settings."""
