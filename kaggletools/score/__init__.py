"""Scoring: metrics, submission files (validate, read, write), honest cross-fitted post-processing, grading against answers."""
