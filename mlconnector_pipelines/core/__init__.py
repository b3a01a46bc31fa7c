"""Protocol-agnostic machinery shared by every external system."""
