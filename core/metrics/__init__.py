"""Scoring predictions against labels, and the table the CLI prints."""
