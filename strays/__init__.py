"""Workers that exist on the platform but not in the stack's state, and their removal.

An update killed mid-create leaves a worker half made: its machine or processes exist, but the
state never recorded them (or recorded only a pending create, which recovery clears). No
``up`` or ``destroy`` names them again. ``strays.core`` decides which nodes are strays (pure:
what exists, what the state holds), and one adapter per platform lists and removes nodes
(``strays.local``, ``strays.lab``, ``strays.vultr``); ``strays.sweep`` wires them. Where it
runs and why: docs/scaler.md.
"""
