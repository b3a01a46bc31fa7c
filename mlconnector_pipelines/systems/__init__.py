"""One package per external system: its auth, client, Dagster resource and entity catalog."""
