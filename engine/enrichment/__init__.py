"""Enrichment: ClickHouse trades data, Steps A–E, gates, demo data.

Import the modules you need (schema, stepd, stepe, gates, job, demo); this package file stays
empty so importing one step never drags in the others.
"""
