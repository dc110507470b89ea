"""Forecast scoring: Brier and log loss of stored pipeline forecasts once their markets resolve."""
