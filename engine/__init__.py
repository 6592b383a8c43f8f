"""Isolated access to the Pulumi engine for this project.

Everything that drives Pulumi here (the README commands, the scaler, the tests) goes through
this package so that it always uses the project's own Pulumi home, file backend and CLI, and
never a user's global login.
"""
