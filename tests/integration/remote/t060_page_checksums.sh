#!/usr/bin/env bash
# t060_page_checksums against a repository behind `pgkeep server` (IT_REPO in ../lib.sh).
IT_REPO=remote exec bash "$(dirname "$0")/../t060_page_checksums.sh"
