#!/bin/bash
# gemnar-backup: one nightly run of `python -m backups backup` (see docs/backups.md).
# Dumps PostgreSQL in one snapshot with its manifest, verifies the dump reads back complete,
# encrypts it with the key from the root-only backup.env, stores it locally and off-site with
# checksums, copies new media off-site, then applies retention. A failure exits non-zero with
# the reason as the last line (the journal), in the status file and in the textfile metric.
set -euo pipefail
umask 077
cd '@{project_dir}'
exec '@{python}' -m backups --settings '@{settings_file}' --env '@{env_file}' backup
