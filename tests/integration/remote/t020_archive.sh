#!/usr/bin/env bash
# t020_archive against a repository behind `pgkeep server` (IT_REPO in ../lib.sh).
IT_REPO=remote exec bash "$(dirname "$0")/../t020_archive.sh"
