"""SAP Business One Service Layer: session, client and entity catalog."""
