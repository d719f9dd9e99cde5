"""The pure core of annotation: judging rules, import parsing, aggregation and snapshot math.

Nothing here imports Django or touches the database (an import-linter contract in
`pyproject.toml` holds this): plain values in, plain values out, so each piece is tested alone
and the services above it decide what is read and written.
"""
