"""Storage drivers.  ``disk``: per-container disk quotas on a filesystem image."""
