"""Entrypoints: the composition root (bootstrap), the HTTP API, the command line."""
