"""Fault-injection tests: real broker, real databases, real model, injected faults."""
