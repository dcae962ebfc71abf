"""The rejection audit: the record of one rejection, the fold of floods into bounded rows, the journal
that survives a crash, the writer thread and the store on SQLite or PostgreSQL.

Owns: everything between "this request was rejected" and a row operators can query. May import:
`core`, `settings`, `observability`, `db`. Never `auth` or anything above it.
"""
