"""Backups that restore: encrypted PostgreSQL dumps and media copies, local and off-site.

``python -m backups backup|restore|prune|status``. Pure planners (retention, media sync) sit
apart from the I/O modules (pg tools, S3 store, crypto streams) so they are tested with tables
and property tests; the orchestration in ``run_backup``/``run_restore`` is tested against a real
PostgreSQL, PgBouncer and S3 server.
"""
