#!/usr/bin/env bash
# t040_pitr against a repository behind `pgkeep server` (IT_REPO in ../lib.sh).
IT_REPO=remote exec bash "$(dirname "$0")/../t040_pitr.sh"
