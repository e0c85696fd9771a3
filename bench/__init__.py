"""Benchmarks: each module measures one claim and records its figures in ``bench/results.json``."""
