"""Tests of the finpulse command groups."""
