"""Use cases and the ports they need. Imports the domain only; adapters plug in from outside."""
