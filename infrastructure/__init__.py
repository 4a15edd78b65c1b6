"""Settings, persistence wiring, SQL views and hashing; depends on the domain only."""
