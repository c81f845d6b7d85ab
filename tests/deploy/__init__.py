"""Tests of docker/ and the health probe."""
