"""In-memory implementations of the ports the use cases need besides the event store (which
is app.infrastructure.memory_store): the vault's wrapping-key rows, the denial log, the key
directory and the index of active access keys. Real behaviour, no database: the in-memory
runtime (app.bootstrap.InMemoryRuntime) wires them for the use-case tests."""
