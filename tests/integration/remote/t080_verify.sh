#!/usr/bin/env bash
# t080_verify against a repository behind `pgkeep server` (IT_REPO in ../lib.sh).
IT_REPO=remote exec bash "$(dirname "$0")/../t080_verify.sh"
