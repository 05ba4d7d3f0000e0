"""Benchmarks that ship with the package: the planted benchmark, its plots, and the demo."""
