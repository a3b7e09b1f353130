#!/usr/bin/env python3
# bench/store_growth.py: what one pgkeep backup added to a block store, by kind.
#
# usage: store_growth.py STANZA_DIR PACKS_BEFORE NEW_MANIFEST PRIOR_MANIFEST INDEX_BYTES_BEFORE
#
# STANZA_DIR is REPO/STANZA; PACKS_BEFORE a file listing the pack files (paths) that existed
# before the backup; the manifests are the backup's and its prior's. Reads only the record
# headers of the packs the backup created (doc/repository-format.md, "Block store") and the
# manifests' text; prints key=value lines:
#   packs, pack_header_bytes           new pack files and their 16-byte headers
#   data_records, data_stored, data_raw    new data blocks (records whose id is no block list)
#   list_records, list_stored, list_raw    new block-list objects (ids of the new manifest's g lines)
#   delta_records, delta_stored, delta_raw of those, delta lists: raw size other than COUNT * 32
#                                      (COUNT from the g line; doc/repository-format.md, "Block lists")
#   record_header_bytes                56 bytes per new record
#   manifest_bytes                     the new manifest
#   index_growth                       apparent size of store/index now minus INDEX_BYTES_BEFORE
#   groups, groups_new                 g lines of the new manifest, and those naming a list the
#                                      prior manifest does not name (lists rewritten)
#   id_lines, id_lines_new             single-id lines, and those not in the prior manifest
import os
import struct
import sys

REC_HDR = 56
PACK_HDR = 16


def manifest_refs(path):
    """The ids of a manifest's g lines (dict id -> COUNT, count) and of its id lines (set, count)."""
    groups, ids = {}, set()
    ngroups = nids = 0
    in_files = False
    with open(path, "rb") as f:
        for line in f:
            line = line.rstrip(b"\n")
            if not in_files:
                in_files = line == b"files"
                continue
            if line.startswith(b"g\t"):
                f_ = line.split(b"\t")
                groups[f_[1].lower()] = int(f_[2])
                ngroups += 1
            elif len(line) == 64 and b"\t" not in line:
                ids.add(line.lower())
                nids += 1
    return groups, ngroups, ids, nids


def main():
    if len(sys.argv) != 6:
        sys.exit("usage: store_growth.py STANZA_DIR PACKS_BEFORE NEW_MANIFEST PRIOR_MANIFEST INDEX_BYTES_BEFORE")
    stanza, before_list, new_mf, prior_mf, index_before = sys.argv[1:]
    with open(before_list) as f:
        before = {line.strip() for line in f if line.strip()}
    store = os.path.join(stanza, "store")
    packs = []
    for d, _, names in os.walk(os.path.join(store, "pack")):
        packs += [os.path.join(d, n) for n in names if n.endswith(".pack")]
    new_packs = sorted(p for p in packs if p not in before)

    groups, ngroups, ids, nids = manifest_refs(new_mf)
    pgroups, _, pids, _ = manifest_refs(prior_mf)
    out = dict(packs=len(new_packs), pack_header_bytes=PACK_HDR * len(new_packs),
               data_records=0, data_stored=0, data_raw=0, list_records=0, list_stored=0, list_raw=0,
               delta_records=0, delta_stored=0, delta_raw=0,
               record_header_bytes=0)
    for p in new_packs:
        size = os.path.getsize(p)
        with open(p, "rb") as f:
            if f.read(PACK_HDR)[:8] != b"PGKPACK1":
                sys.exit(f"{p}: not a pack file")
            off = PACK_HDR
            while off < size:
                f.seek(off)
                h = f.read(REC_HDR)
                if len(h) != REC_HDR or h[:4] != b"PGKR":
                    sys.exit(f"{p}: no record at offset {off}")
                rid = h[4:36].hex().encode()
                raw_len, stored_len = struct.unpack_from("<II", h, 40)
                kind = "list" if rid in groups else "data"
                out[kind + "_records"] += 1
                out[kind + "_stored"] += stored_len
                out[kind + "_raw"] += raw_len
                if kind == "list" and raw_len != groups[rid] * 32:
                    out["delta_records"] += 1
                    out["delta_stored"] += stored_len
                    out["delta_raw"] += raw_len
                out["record_header_bytes"] += REC_HDR
                off += REC_HDR + stored_len
    out["manifest_bytes"] = os.path.getsize(new_mf)
    out["index_growth"] = os.path.getsize(os.path.join(store, "index")) - int(index_before)
    out["groups"] = ngroups
    out["groups_new"] = len(groups.keys() - pgroups.keys())
    out["id_lines"] = nids
    out["id_lines_new"] = len(ids - pids)
    for k, v in out.items():
        print(f"{k}={v}")


if __name__ == "__main__":
    main()
