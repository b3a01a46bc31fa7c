"""Acumatica: the contract-based REST API (Default endpoint), records into the warehouse, journals and records from Looker."""
