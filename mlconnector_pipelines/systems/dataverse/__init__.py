"""Dynamics 365 Sales on Dataverse: the source of the Sales → Business Central flow."""
