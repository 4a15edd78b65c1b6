"""The model and its use cases; imports only the standard library and eventsourcing."""
