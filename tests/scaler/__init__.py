"""Tests of the scaler package."""
