"""Guardrails over finished datasets: train/eval leakage (``leakage.py``) and policy re-checks from a ledger."""
