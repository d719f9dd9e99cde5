"""REST API v1 (`/api/v1/`), one module per domain; one view per operation: parse, authorize, call one
service, serialize."""
