"""Plain unit tests: the aggregation package needs no database."""
