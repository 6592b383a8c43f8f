"""Tests for the Python stand-in of the pulumi-resource-command provider plugin."""
