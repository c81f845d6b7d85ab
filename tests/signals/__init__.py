"""Tests of risk signals."""
