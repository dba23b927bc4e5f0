"""The Yeastar-compatible HTTP API: one thin module per resource."""
