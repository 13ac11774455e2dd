"""Evaluation loop, metric aggregation and pictures."""
