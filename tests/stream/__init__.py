"""Tests of the consumer, its batches, sink and faults."""
