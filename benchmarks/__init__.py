"""Reproducible performance runs that print figures and ratios (never pass/fail)."""
