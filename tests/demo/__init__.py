"""Tests of make demo."""
