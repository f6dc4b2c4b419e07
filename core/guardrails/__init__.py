"""Guardrails: input screening (PII, prompt injection), tool risk rules, output checks."""
