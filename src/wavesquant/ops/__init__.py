"""Operator tooling: read-only views of a running system (queries) and the `wq` commands over them."""
