#!/usr/bin/env bash
# t100_expire against a repository behind `pgkeep server` (IT_REPO in ../lib.sh).
IT_REPO=remote exec bash "$(dirname "$0")/../t100_expire.sh"
