"""Tests of serving and hot swap."""
