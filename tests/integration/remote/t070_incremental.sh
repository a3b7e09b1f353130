#!/usr/bin/env bash
# t070_incremental against a repository behind `pgkeep server` (IT_REPO in ../lib.sh).
IT_REPO=remote exec bash "$(dirname "$0")/../t070_incremental.sh"
