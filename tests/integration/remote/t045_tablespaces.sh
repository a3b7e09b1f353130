#!/usr/bin/env bash
# t045_tablespaces against a repository behind `pgkeep server` (IT_REPO in ../lib.sh).
IT_REPO=remote exec bash "$(dirname "$0")/../t045_tablespaces.sh"
