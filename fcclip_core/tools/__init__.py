"""Command-line tools: parity check, benchmarks, segmentation and weight management."""
