"""``python -m backups backup|restore|prune|status`` on the controller.

Settings come from the controller's ``controller.json`` (paths, ports, names) and the
root-only ``backup.env`` (secret, off-site bucket, retention); under systemd the env file may
also arrive through ``LoadCredential=`` as ``$CREDENTIALS_DIRECTORY/backup.env``. Exit status:
0 done, 1 failed (the reason is the last line on stderr, in the journal, the status file and the
``gemnar_backup_last_attempt_success`` metric), 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from backups import crypto
from backups.backup import (
    BackupError,
    complete_sets,
    locked,
    prune_store,
    run_backup,
    stores,
    work_dir,
)
from backups.config import (
    METRICS_FILE,
    STATUS_FILE_NAME,
    BackupConfig,
    BackupConfigError,
    env_file_path,
    from_controller,
    parse_env_file,
)
from backups.restore import RestoreError, RestoreRequest, run_restore
from backups.status import Outcome, read_status, record
from backups.store import StoreError
from provisioning.settings import ControllerSettings
from provisioning.settings_codec import controller_from_json

log = logging.getLogger("backups")
DEFAULT_SETTINGS = Path("/etc/gemnar/controller.json")


def load_config(settings_file: Path, env_file: Path | None) -> BackupConfig:
    return config_from(controller_from_json(settings_file.read_text()), env_file)


def config_from(settings: ControllerSettings, env_file: Path | None) -> BackupConfig:
    if env_file is None:
        credentials = os.environ.get("CREDENTIALS_DIRECTORY")
        env_file = (Path(credentials) / "backup.env" if credentials
                    else env_file_path(settings))
    try:
        env = parse_env_file(env_file.read_text())
    except OSError as error:
        raise BackupConfigError(f"cannot read {env_file}: {error.strerror}") from None
    return from_controller(settings, env)


def _sets(cfg: BackupConfig) -> dict[str, list[str]]:
    found = {}
    for store in stores(cfg):
        try:
            found[store.name] = complete_sets(store)
        except StoreError as error:
            log.warning("%s", error)
    return found


def cmd_backup(cfg: BackupConfig) -> int:
    started = time.time()
    try:
        result = run_backup(cfg)
    except BackupError as error:
        outcome = Outcome("backup", "", False, started, time.time(), error=str(error))
        record(cfg.status_file, cfg.metrics_file, outcome, _sets(cfg))
        print(f"gemnar-backup: FAILED: {error}; earlier backups are untouched", file=sys.stderr)
        return 1
    outcome = Outcome("backup", result.stamp, True, started, time.time(), sizes=result.sizes,
                      durations=result.durations)
    record(cfg.status_file, cfg.metrics_file, outcome, _sets(cfg))
    rows = sum(t.rows for t in result.manifest.tables.values())
    print(f"gemnar-backup: {result.stamp} ok: {len(result.manifest.tables)} tables, {rows} rows, "
          f"{result.manifest.media_files} media files; sizes {result.sizes}; "
          f"durations {result.durations}; pruned {result.pruned}")
    return 0


def cmd_restore(cfg: BackupConfig, args: argparse.Namespace) -> int:
    request = RestoreRequest(
        wanted=args.from_, source=args.source, into=args.into, swap=args.swap,
        media_into=args.media_into, swap_media=args.swap_media, with_globals=args.with_globals,
    )
    started = time.time()
    try:
        result = run_restore(cfg, request)
    except RestoreError as error:
        print(f"gemnar-restore: FAILED: {error}", file=sys.stderr)
        return 1
    print(json.dumps({**vars(result), "media_dir": str(result.media_dir or ""),
                      "seconds": round(time.time() - started, 3)}, indent=1))
    return 0


def cmd_prune(cfg: BackupConfig) -> int:
    master = crypto.master_key_from_secret(cfg.secret)
    try:
        with locked(cfg), work_dir(cfg, "prune") as work:
            for store in stores(cfg):
                print(f"{store.name}: pruned {prune_store(cfg, store, master, work)}")
    except (BackupError, StoreError) as error:
        print(f"gemnar-backup prune: FAILED: {error}", file=sys.stderr)
        return 1
    return 0


def cmd_status(cfg: BackupConfig) -> int:
    status = read_status(cfg.status_file)
    status["sets_now"] = _sets(cfg)
    print(json.dumps(status, indent=1, sort_keys=True))
    return 0 if status.get("healthy", False) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backups", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", type=Path, default=DEFAULT_SETTINGS,
                        help="the controller's settings JSON")
    parser.add_argument("--env", type=Path, default=None, help="backup.env (root-only)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("backup", help="dump, verify, encrypt, store, prune")
    restore = sub.add_parser("restore", help="restore a backup into a fresh database")
    restore.add_argument("--from", dest="from_", default="latest",
                         help="latest, a stamp (20260102T030000Z) or a date (2026-01-02)")
    restore.add_argument("--source", default="auto", choices=["auto", "local", "offsite"])
    restore.add_argument("--into", default=None, help="new database name")
    restore.add_argument("--swap", action="store_true",
                         help="after every check passed, swap it in (app paused by PgBouncer)")
    restore.add_argument("--media-into", type=Path, default=None,
                         help="restore media into this new directory")
    restore.add_argument("--swap-media", action="store_true",
                         help="move restored media into the media root (old one kept)")
    restore.add_argument("--with-globals", action="store_true",
                         help="first create the saved roles (a new cluster); existing are kept")
    sub.add_parser("prune", help="apply retention to every store")
    sub.add_parser("status", help="last runs and the sets in every store")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    try:
        settings = controller_from_json(args.settings.read_text())
    except (OSError, ValueError, TypeError) as error:
        print(f"gemnar-backup: configuration: {args.settings}: {error}", file=sys.stderr)
        return 2
    try:
        cfg = config_from(settings, args.env)
    except (BackupConfigError, OSError, ValueError) as error:
        print(f"gemnar-backup: configuration: {error}", file=sys.stderr)
        if args.command == "backup":
            # A night without backup.env is a failed backup: it must show where operators look.
            status_file = Path(settings.paths.state_dir) / STATUS_FILE_NAME
            now = time.time()
            metrics = os.environ.get("GEMNAR_BACKUP_METRICS_FILE") or METRICS_FILE
            record(status_file, Path(metrics),
                   Outcome("backup", "", False, now, now, error=f"configuration: {error}"), {})
        return 2
    if args.command == "backup":
        return cmd_backup(cfg)
    if args.command == "restore":
        return cmd_restore(cfg, args)
    if args.command == "prune":
        return cmd_prune(cfg)
    return cmd_status(cfg)


if __name__ == "__main__":
    sys.exit(main())
