"""The pure vocabulary under everything: reason codes, the token parser, keys, realms, sessions, the
shapes of a hook request, realm powers and the API-key and logout-token claims.

Owns: every rule that needs no IO. May import: the standard library and pure third-party libraries
only (no webhook package, no network, no database, no clock read at import). Everything else may
import it.
"""
