#!/usr/bin/env python3
"""bench/wal_copy.py: copies of a WAL segment as other segments, for bench.sh's remote-rss.

usage: wal_copy.py SEGMENT DIR SEGSIZE N

Writes N copies of SEGMENT into DIR, the i-th (1..N) as segment number + 16 * i of the same
timeline: named for it, and with the page address in the header of every XLOG page
(xlp_pageaddr, 8 bytes at offset 8 of each 8 KiB page) moved by the same amount, so that a tool
that checks a segment's header against its name accepts it. The records are not changed. Prints
the paths written, one a line.
"""
import os
import struct
import sys

PAGE = 8192
CHUNK = 8 << 20


def main():
    src, outdir, segsize, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    name = os.path.basename(src)
    tli, log, seg = int(name[0:8], 16), int(name[8:16], 16), int(name[16:24], 16)
    per_log = 0x100000000 // segsize
    segno = log * per_log + seg
    for i in range(1, n + 1):
        new = segno + 16 * i
        shift = (new - segno) * segsize
        path = os.path.join(outdir, "%08X%08X%08X" % (tli, new // per_log, new % per_log))
        with open(src, "rb") as fi, open(path, "wb") as fo:
            while True:
                buf = bytearray(fi.read(CHUNK))
                if not buf:
                    break
                for off in range(0, len(buf) - PAGE + 1, PAGE):
                    (addr,) = struct.unpack_from("<Q", buf, off + 8)
                    struct.pack_into("<Q", buf, off + 8, addr + shift)
                fo.write(buf)
        print(path)


if __name__ == "__main__":
    main()
