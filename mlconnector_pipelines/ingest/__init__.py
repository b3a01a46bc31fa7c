"""Webhook receivers: deliveries pushed to us, stored durably before they are acknowledged."""
