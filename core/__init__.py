"""Steward's core library: settings, errors, database, domain, knowledge, guardrails, budget.

Everything above (the workflow, the service, the evals) builds on it; it imports none of them.
"""
