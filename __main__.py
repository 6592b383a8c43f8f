"""Pulumi entry point of the gemnar project."""

from program import main

main()
