"""Tests of settings, database, errors, logs."""
