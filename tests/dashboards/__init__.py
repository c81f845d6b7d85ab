"""Tests of the dashboard (AppTest and a real browser)."""
