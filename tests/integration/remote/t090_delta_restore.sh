#!/usr/bin/env bash
# t090_delta_restore against a repository behind `pgkeep server` (IT_REPO in ../lib.sh).
IT_REPO=remote exec bash "$(dirname "$0")/../t090_delta_restore.sh"
