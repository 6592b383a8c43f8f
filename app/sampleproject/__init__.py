"""Sample project deployed by default: shows which worker served a page, sessions, cache, WS."""
