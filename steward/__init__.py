"""Steward: a stateful support and operations agent service."""
