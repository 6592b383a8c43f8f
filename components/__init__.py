"""Pulumi components of the gemnar stack: one ComponentResource per module."""
