#!/usr/bin/env bash
# t030_backup_restore against a repository behind `pgkeep server` (IT_REPO in ../lib.sh).
IT_REPO=remote exec bash "$(dirname "$0")/../t030_backup_restore.sh"
