"""The pure core: no I/O, no asyncio, no sockets; time comes in as an argument."""
