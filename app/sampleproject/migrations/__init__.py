"""Migrations of the sample project."""
