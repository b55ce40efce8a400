"""Streaming engine: audio sources, ring buffer, numba features, detectors, events and sinks."""
