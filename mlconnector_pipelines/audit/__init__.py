"""The audit store: every planned write into an ERP, its state, attempts and evidence (see store.py)."""
