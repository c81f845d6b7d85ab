"""Tests of registry, retraining, drift, scheduler."""
