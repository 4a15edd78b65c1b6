"""The outside edge: FastAPI app, schemas, problem+json errors, auth and the CLI."""
