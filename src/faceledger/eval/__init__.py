"""Evaluation: verification protocols (LFW, pair lists), calibration, benchmarks and reports."""
