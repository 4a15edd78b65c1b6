"""Settings, persistence wiring, SQL views and API-key storage; depends on the domain only."""
