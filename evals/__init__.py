"""Offline evaluation of the workflow: datasets, evaluators, reports."""
