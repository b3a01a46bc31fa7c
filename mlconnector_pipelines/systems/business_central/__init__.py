"""Business Central API v2.0: catalog, client and Dagster resource."""
