"""Tests of alert rules, states, evaluation and notifications."""
