#!/usr/bin/env bash
# t200_server.sh: `pgkeep server` over mutual TLS and the remote repository driver.
#
# A CA, a server certificate and client certificates are made with openssl.
# The server runs as the test user on 127.0.0.1:55530 with the repository in
# WORK/repo; the PostgreSQL node's pgkeep.conf has repo1-host and no repo1-path.
# PostgreSQL archives through the server and every segment comes back byte for
# byte; stanza-create, check, backup, info, verify, restore and expire work
# through it.
# A client without a certificate, with one from another CA, an expired one, or
# a CN the server does not know is refused with a clear message on both sides
# and nothing is written; a client allowed one stanza cannot touch another; a
# request with ".." in a name and a malformed frame are refused and the server
# goes on; a server killed in the middle of a push leaves no segment behind
# and the retry after a restart stores it intact; a client killed in the
# middle of a push leaves no file; four clients are served at once; SIGHUP
# reloads the access map, the connection limit and the timeouts (an invalid
# file is refused and the old configuration kept); idle connections and
# stalled handshakes are closed; SIGTERM stops the server; it refuses to run
# as root.
. "$(dirname "$0")/lib.sh"

WALSEG=16
PORT=55530
it_setup
command -v openssl >/dev/null || hard_error "openssl is required"

# ---------------------------------------------------------------- certificates
C=$WORK/certs
mkdir -p "$C"
# make_ca DIR CN
make_ca() {
	mkdir -p "$1"
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$1/ca.key" -out "$1/ca.crt" -days 30 -subj "/CN=$2" 2>/dev/null
}
# make_cert CADIR NAME CN [openssl x509 args...]: NAME.crt and NAME.key signed by the CA in CADIR.
make_cert() {
	local ca=$1 name=$2 cn=$3
	shift 3
	openssl req -newkey rsa:2048 -nodes -keyout "$C/$name.key" -out "$C/$name.csr" -subj "/CN=$cn" 2>/dev/null
	openssl x509 -req -in "$C/$name.csr" -CA "$ca/ca.crt" -CAkey "$ca/ca.key" -CAcreateserial -out "$C/$name.crt" \
		-days 30 "$@" 2>/dev/null
}
make_ca "$C" "pgkeep test CA"
make_ca "$C/foreign" "some other CA"
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$C/san.ext"
make_cert "$C" server localhost -extfile "$C/san.ext"
make_cert "$C" pgnode pgnode
make_cert "$C" intruder intruder
make_cert "$C" stranger stranger
make_cert "$C/foreign" foreign pgnode
# An expired certificate (OpenSSL 3.0's x509 cannot backdate: use its ca command).
mkdir -p "$C/db"
: >"$C/db/index.txt"
echo 01 >"$C/db/serial"
printf '[ca]\ndefault_ca=t\n[t]\ndatabase=%s/db/index.txt\nnew_certs_dir=%s/db\ncertificate=%s/ca.crt\nprivate_key=%s/ca.key\nserial=%s/db/serial\ndefault_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n' \
	"$C" "$C" "$C" "$C" "$C" >"$C/ca.cnf"
openssl req -newkey rsa:2048 -nodes -keyout "$C/expired.key" -out "$C/expired.csr" -subj "/CN=pgnode" 2>/dev/null
openssl ca -batch -config "$C/ca.cnf" -in "$C/expired.csr" -out "$C/expired.crt" \
	-startdate 20200101000000Z -enddate 20200201000000Z >/dev/null 2>&1
[ -s "$C/expired.crt" ] || hard_error "could not make the expired certificate"
chmod 600 "$C"/*.key
[ "$(id -u)" -ne 0 ] || chown -R postgres: "$C"

# ---------------------------------------------------------------- server and client
cat >"$WORK/server.conf" <<EOF
[global]
repo1-path=$WORK/repo
log-path=$WORK/log
lock-path=$WORK/lock
log-level-console=info
log-level-file=detail
protocol-timeout=30
tls-server-address=127.0.0.1
tls-server-port=$PORT
tls-server-cert-file=$C/server.crt
tls-server-key-file=$C/server.key
tls-server-ca-file=$C/ca.crt
tls-server-auth=pgnode=main
tls-server-auth=intruder=other
EOF
[ "$(id -u)" -ne 0 ] || chown postgres: "$WORK/server.conf"

# The PostgreSQL node: repo1-host instead of repo1-path.
IT_ARCHIVE_COMMAND=$(archive_command_with_copy)
pg_new main 55520
write_config main
sed -i '/^repo1-path=/d' "$WORK/pgkeep.conf"
sed -i "/^\[global\]/a repo1-host=localhost\nrepo1-host-type=tls\nrepo1-host-port=$PORT\nrepo1-host-cert-file=$C/pgnode.crt\nrepo1-host-key-file=$C/pgnode.key\nrepo1-host-ca-file=$C/ca.crt" \
	"$WORK/pgkeep.conf"
assert_not_contains "$WORK/pgkeep.conf" "repo1-path" "the client configuration has no repo1-path"

SERVER_PID=
# server_start: run pgkeep server as the test user in the background (output in WORK/server.log)
# and wait until server-ping answers.
server_start() {
	local i
	if [ "$(id -u)" -eq 0 ]; then
		setpriv --reuid=postgres --regid=postgres --init-groups -- \
			"$WORK/bin/pgkeep" --config="$WORK/server.conf" server >>"$WORK/server.log" 2>&1 &
	else
		"$WORK/bin/pgkeep" --config="$WORK/server.conf" server >>"$WORK/server.log" 2>&1 &
	fi
	SERVER_PID=$!
	IT_BG_PIDS+=("$SERVER_PID")
	for ((i = 0; i < 50; i++)); do
		pk server-ping >/dev/null && { note "server running (pid $SERVER_PID)"; return 0; }
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.2
	done
	tail -n 20 "$WORK/server.log" >&2
	fail "pgkeep server did not start"
}
# server_kill: SIGKILL the server and its connection processes.
server_kill() {
	local kids
	kids=$(pgrep -P "$SERVER_PID" || true)
	kill -9 "$SERVER_PID" $kids 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
	note "server killed (pid $SERVER_PID, connections: ${kids:-none})"
}
# repo_state: one line that changes when any file in the repository changes.
repo_state() { find "$WORK/repo" -type f -printf '%p %s\n' 2>/dev/null | sort | md5sum; }

if [ "$(id -u)" -eq 0 ]; then
	assert_rc 2 "the server refuses to run as root" "$WORK/bin/pgkeep" --config="$WORK/server.conf" --log-level-file=off server
fi
server_start
pk_ok "server-ping" server-ping
assert_contains "$PK_ALL" "answers: pgkeep" "server-ping says the server answers"
assert_contains "$WORK/server.log" "listening on 127.0.0.1 port $PORT" "the server says where it listens"

# ---------------------------------------------------------------- WAL through the server
pg_start main
pk_ok "stanza-create through the server" --stanza=main stanza-create
assert_true "the stanza is in the server's repository" test -f "$WORK/repo/main/stanza.info"
psql_c main "create table t(i int, pad text)"
segs=()
for n in 1 2 3; do
	psql_c main "insert into t select g, md5(g::text) from generate_series(1, 20000) g"
	segs+=("$(pg_switch_wal main)")
done
pg_wait_archived main "${segs[-1]}"
assert_eq "$(psql_c main 'select failed_count from pg_stat_archiver')" 0 "archive-push through the server never failed"
as_user mkdir -p "$WORK/get"
for seg in "${segs[@]}"; do
	assert_eq "$(find "$WORK/repo/main/wal" -name "$seg-*" | wc -l)" 1 "$seg is in the server's repository"
	pk_ok "archive-get $seg through the server" --stanza=main archive-get "$seg" "$WORK/get/$seg"
	assert_true "$seg comes back byte for byte" cmp "$WORK/get/$seg" "$WORK/walcopy/$seg"
done
assert_rc 1 "archive-get of a missing segment is exit 1 through the server" \
	pk --stanza=main archive-get 0000000100000000000000F0 "$WORK/get/missing"
as_user mkdir -p "$WORK/mod"
as_user cp "$WORK/walcopy/${segs[0]}" "$WORK/mod/${segs[0]}"
flip_byte "$WORK/mod/${segs[0]}" 20000
assert_rc 9 "other content under an archived name is refused through the server" \
	pk --stanza=main archive-push "$WORK/mod/${segs[0]}"
pk_ok "check through the server" --stanza=main check

# The client side under ASan+UBSan (leaks included) when the sanitizer build exists.
if [ -x "$WORK/bin/pgkeep_san" ]; then
	PK_BIN=pgkeep_san pk_ok "archive-get through the server with the sanitizer build" \
		--stanza=main archive-get "${segs[0]}" "$WORK/get/san"
	assert_true "and the segment is byte for byte" cmp "$WORK/get/san" "$WORK/walcopy/${segs[0]}"
	PK_BIN=pgkeep_san pk_ok "archive-push of an archived segment with the sanitizer build" \
		--stanza=main archive-push "$WORK/walcopy/${segs[0]}"
	PK_BIN=pgkeep_san pk_ok "info through the server with the sanitizer build" --stanza=main info
fi

# Several clients at once: four archive-gets in parallel, each in its own connection.
pids=()
for i in 1 2 3 4; do
	as_user "$WORK/bin/pgkeep" --config="$WORK/pgkeep.conf" --stanza=main archive-get "${segs[$((i % 3))]}" \
		"$WORK/get/par$i" >"$WORK/tmp/par$i.out" 2>&1 &
	pids+=($!)
done
prc=0
for p in "${pids[@]}"; do wait "$p" || prc=$?; done
assert_eq "$prc" 0 "four archive-gets at once all succeed"
for i in 1 2 3 4; do
	assert_true "parallel get $i is byte for byte" cmp "$WORK/get/par$i" "$WORK/walcopy/${segs[$((i % 3))]}"
done

# ---------------------------------------------------------------- refused clients
before=$(repo_state)
seg=${segs[0]}
# as_client NAME ARGS...: run pk with the certificate NAME.
as_client() {
	local name=$1
	shift
	pk "--repo1-host-cert-file=$C/$name.crt" "--repo1-host-key-file=$C/$name.key" "$@"
}

# No certificate: pgkeep does not even try; a TLS client without one is refused by the server.
sed '/^repo1-host-cert-file=/d;/^repo1-host-key-file=/d' "$WORK/pgkeep.conf" >"$WORK/nocert.conf"
[ "$(id -u)" -ne 0 ] || chown postgres: "$WORK/nocert.conf"
PK_CONFIG=$WORK/nocert.conf assert_rc 2 "a client configuration without a certificate is refused" \
	pk --stanza=main archive-get "$seg" "$WORK/get/nocert"
assert_contains "$PK_ALL" "needs a client certificate" "the message says a certificate is needed"
(sleep 2) | timeout 10 openssl s_client -connect "127.0.0.1:$PORT" -CAfile "$C/ca.crt" >"$WORK/tmp/nocert.out" 2>&1 || true
assert_contains "$WORK/tmp/nocert.out" "certificate required" "a TLS client without a certificate is told one is required"
assert_contains "$WORK/server.log" "peer did not return a certificate" "the server logs the client without a certificate"

assert_rc 19 "a certificate from another CA is refused" as_client foreign --stanza=main archive-get "$seg" "$WORK/get/foreign"
assert_contains "$PK_ALL" "refused the client certificate" "the client is told its certificate was refused"
assert_contains "$WORK/server.log" "certificate verify failed: unable to get local issuer certificate" \
	"the server logs the certificate of another CA"

assert_rc 19 "an expired certificate is refused" as_client expired --stanza=main archive-get "$seg" "$WORK/get/expired"
assert_contains "$PK_ALL" "certificate expired" "the client is told its certificate expired"
assert_contains "$WORK/server.log" "certificate has expired" "the server logs the expired certificate"

assert_rc 19 "a CN missing from tls-server-auth is refused" as_client stranger --stanza=main archive-get "$seg" "$WORK/get/stranger"
assert_contains "$PK_ALL" "does not know client certificate CN \"stranger\"" "the client is told its CN is unknown"
assert_contains "$WORK/server.log" "does not know client certificate CN \"stranger\"" "the server logs the unknown CN"

# A client allowed stanza "other" only, and one allowed "main" only.
assert_rc 19 "a client allowed only stanza other cannot read stanza main" \
	as_client intruder --stanza=main archive-get "$seg" "$WORK/get/intruder"
assert_contains "$PK_ALL" "refuses access to stanza \"main\" for client certificate CN \"intruder\"" \
	"the message names the stanza and the CN"
assert_rc 19 "a client allowed only stanza other cannot write stanza main" \
	as_client intruder --stanza=main archive-push "$WORK/walcopy/${segs[1]}"
assert_rc 19 "a client allowed only stanza main cannot write stanza other" \
	pk --stanza=other archive-push "$WORK/walcopy/${segs[1]}"
assert_rc 19 "nor read it" pk --stanza=other archive-get "$seg" "$WORK/get/other"
pk_ok "info of a client allowed only stanza other lists no stanza of others" \
	--repo1-host-cert-file="$C/intruder.crt" --repo1-host-key-file="$C/intruder.key" info
assert_not_contains "$PK_ALL" "stanza: main" "stanza main is not shown to it"
for f in nocert foreign expired stranger intruder other; do
	assert_true "nothing was written for the refused $f client" test ! -e "$WORK/get/$f"
done
assert_eq "$(repo_state)" "$before" "the refused clients changed nothing in the repository"

# ---------------------------------------------------------------- hostile requests
# send_raw FILE: send the hello and the bytes of FILE to the server with the pgnode certificate; the
# server's answer goes to FILE.out.
send_raw() {
	{ printf 'PGKEEP\r\n\0\0\0\3'; cat "$1"; sleep 2; } |
		timeout 10 openssl s_client -quiet -connect "127.0.0.1:$PORT" -CAfile "$C/ca.crt" \
			-cert "$C/pgnode.crt" -key "$C/pgnode.key" >"$1.out" 2>/dev/null || true
}
# A wal-find (op 7) of stanza main for "../../../etc/passwd": fields u32 op, str stanza, str name.
name='../../../etc/passwd'
len=$((5 + 5 + 5 + 5 + ${#name} + 1))
{
	printf '\1\0\0\0\0\0\0'; printf "\\$(printf %03o "$len")"
	printf '\1\0\0\0\7'
	printf '\3\0\0\0\5main\0'
	printf '\3\0\0\0'; printf "\\$(printf %03o $((${#name} + 1)))"; printf '%s\0' "$name"
} >"$WORK/tmp/dotdot.bin"
send_raw "$WORK/tmp/dotdot.bin"
assert_true "a request for ../../../etc/passwd is refused with the reason" \
	grep -aq 'invalid WAL file name "../../../etc/passwd": it must not start with' "$WORK/tmp/dotdot.bin.out"
assert_not_contains "$WORK/tmp/dotdot.bin.out" "root:" "no byte of /etc/passwd is sent"
# A frame that announces 2 GiB.
printf '\1\0\0\0\177\377\377\377' >"$WORK/tmp/huge.bin"
send_raw "$WORK/tmp/huge.bin"
assert_true "a frame of 2 GiB is refused with the reason" grep -aq "exceeds the maximum" "$WORK/tmp/huge.bin.out"
# A block-put (op 11) batch of two records whose second has compression type 7: the whole batch
# is refused, its valid first block is not stored either (repo_state below).
perl -e 'sub u { "\x01" . pack("N", shift) } sub b { "\x04" . pack("N", length $_[0]) . $_[0] }
	my $p = u(11) . "\x03" . pack("N", 5) . "main\0" . u(2);
	$p .= b("\xab" x 32) . u($_) . u(4) . b("abcd") for (0, 7);
	print "\x01\0\0\0" . pack("N", length $p) . $p' >"$WORK/tmp/badbatch.bin"
send_raw "$WORK/tmp/badbatch.bin"
assert_true "a block batch with one bad record is refused with the reason" \
	grep -aq "compression type: unknown type 7" "$WORK/tmp/badbatch.bin.out"
assert_contains "$WORK/server.log" "sent a malformed request" "the server logs the malformed request"
pk_ok "the server goes on serving after malformed frames" server-ping
assert_eq "$(repo_state)" "$before" "the hostile requests changed nothing in the repository"

# ---------------------------------------------------------------- kill in the middle of a push
# The last archived segment is taken out of the repository and pushed again, with incompressible
# content after its header and the slowest compression, so that the push lasts several seconds.
kseg=${segs[-1]}
as_user mkdir -p "$WORK/kill"
as_user dd if="$WORK/walcopy/$kseg" of="$WORK/kill/$kseg" bs=64k count=1 status=none
head -c $((16 * 1024 * 1024 - 65536)) /dev/urandom >>"$WORK/kill/$kseg"
rm -f "$WORK"/repo/main/wal/*/"$kseg"-*
( pk --stanza=main --compress-level=19 --process-max=1 archive-push "$WORK/kill/$kseg" >/dev/null || true; echo "$PK_RC" >"$WORK/tmp/kill.rc" ) &
push_pid=$!
sleep 2.5
assert_true "the push is still running after 2.5 s" test ! -e "$WORK/tmp/kill.rc"
server_kill
wait "$push_pid" || true
krc=$(cat "$WORK/tmp/kill.rc")
note "archive-push during the kill exited $krc"
assert_true "archive-push fails when the server dies under it (exit $krc)" test "$krc" -ne 0
assert_eq "$(find "$WORK/repo/main/wal" -name "$kseg-*" | wc -l)" 0 "no copy of $kseg is committed"
server_start
pk_ok "the retry after the restart succeeds" --stanza=main archive-push "$WORK/kill/$kseg"
pk_ok "archive-get of the retried segment" --stanza=main archive-get "$kseg" "$WORK/get/$kseg.retried"
assert_true "the retried segment is intact" cmp "$WORK/get/$kseg.retried" "$WORK/kill/$kseg"

# The client killed in the middle of a push: the server aborts it and removes its temporary file.
cseg=${segs[1]}
as_user dd if="$WORK/walcopy/$cseg" of="$WORK/kill/$cseg" bs=64k count=1 status=none
head -c $((16 * 1024 * 1024 - 65536)) /dev/urandom >>"$WORK/kill/$cseg"
rm -f "$WORK"/repo/main/wal/*/"$cseg"-*
( pk --stanza=main --compress-level=19 --process-max=1 archive-push "$WORK/kill/$cseg" >/dev/null || true ) &
cpush=$!
sleep 2
cpid=$(pgrep -f "archive-push $WORK/kill/$cseg" | while read -r p; do
	[ "$(cat /proc/"$p"/comm 2>/dev/null)" = pgkeep ] && echo "$p"; done | head -n 1)
[ -n "$cpid" ] || fail "the slow archive-push is not running"
kill -9 "$cpid"
wait "$cpush" || true
left=1
for _ in $(seq 1 25); do
	left=$(find "$WORK/repo/main/wal" -name "$cseg*" | wc -l)
	[ "$left" -eq 0 ] && break
	sleep 0.2
done
assert_eq "$left" 0 "a client killed in the middle of a push leaves no file behind (committed or temporary)"
pk_ok "the original segment goes back in" --stanza=main archive-push "$WORK/walcopy/$cseg"

# ---------------------------------------------------------------- backup and restore through the server
pgbench_init main 2
pk_ok "full backup through the server" --stanza=main backup --type=full
assert_eq "$(find "$WORK/repo/main/backup" -name manifest | wc -l)" 1 "the backup is in the server's repository"
psql_c main "insert into t select g, 'after full' from generate_series(1, 1000) g"
pk_ok "incremental backup through the server" --stanza=main backup --type=incr
expected=$(data_fingerprint main)
expected_t=$(psql_c main "select count(*) from t")
info_json "$WORK/info.json"
assert_json "$WORK/info.json" '.[0].backup | length == 2' "info through the server shows both backups"
pk_ok "verify through the server" --stanza=main verify
pk_ok "verify --fast through the server" --stanza=main verify --fast
pk_restore restored 55521
pg_start restored
pg_wait_promoted restored
assert_eq "$(data_fingerprint restored)" "$expected" "the restored cluster has the pgbench data"
assert_eq "$(psql_c restored "select count(*) from t")" "$expected_t" "and every row of t"
pg_stop restored

# ---------------------------------------------------------------- expire through the server
pk_ok "expire through the server" --stanza=main --repo1-retention-full=1 expire
assert_match "$PK_ALL" "removed [0-9]+ WAL files" "expire through the server removes the WAL older than the backups"
full=$(jq -r '.[0].backup[0].label' "$WORK/info.json")
pk_ok "expire --set of the full backup through the server" --stanza=main expire --set="$full"
assert_true "the full backup is gone from the server's repository" test ! -e "$WORK/repo/main/backup/$full/manifest"
assert_match "$PK_ALL" "garbage collection" "expire through the server collects garbage"
pk_ok "verify through the server after expire" --stanza=main verify

# ---------------------------------------------------------------- a damaged pack through the server
# Damage 4 bytes in the middle of the largest pack. The server answers block reads in batches that
# stop before a block it cannot read (the blocks before it arrive, the client asks again for the
# rest): a restore through the server must still fail exactly as one on the backup node does (exit
# 8, the same message naming the block, its file and its pack), not hang or fall out of step with
# the server, which goes on serving.
pack=$(find "$WORK/repo/main/store/pack" -name '*.pack' -printf '%s %p\n' | sort -n | tail -n 1 | cut -d' ' -f2)
printf '\377\376\375\374' | dd of="$pack" bs=1 seek=$(($(stat -c %s "$pack") / 2)) conv=notrunc status=none
as_user mkdir -m 700 "$WORK/damaged"
PK_CONFIG=$WORK/server.conf
assert_rc 8 "a restore on the backup node from the damaged pack fails as corrupt" \
	pk --stanza=main --pg1-path="$WORK/damaged" --process-max=1 restore
unset PK_CONFIG
local_error=$(grep -a '^ERROR' "$PK_ALL" || true)
assert_match "$PK_ALL" "ERROR: \\[corrupt\\] .*$pack" "and names the damaged pack"
rm -rf "$WORK/damaged"
as_user mkdir -m 700 "$WORK/damaged"
assert_rc 8 "a restore through the server from the damaged pack fails as corrupt" \
	pk --stanza=main --pg1-path="$WORK/damaged" --process-max=1 restore
assert_eq "$(grep -a '^ERROR' "$PK_ALL" || true)" "$local_error" \
	"with the same message as on the backup node (it was lost before)"
pk_ok "the server goes on serving after the failed restore" server-ping

# ---------------------------------------------------------------- SIGHUP and SIGTERM
assert_rc 19 "before the reload CN stranger is refused" as_client stranger server-ping
echo "tls-server-auth=stranger=main" >>"$WORK/server.conf"
kill -HUP "$SERVER_PID"
sleep 1.5
assert_contains "$WORK/server.log" "configuration and certificates reloaded" "SIGHUP reloads the configuration"
pk_ok "after the reload CN stranger is let in" \
	--repo1-host-cert-file="$C/stranger.crt" --repo1-host-key-file="$C/stranger.key" server-ping
# Timeouts and the connection limit, reloaded too: one connection at most, 3 s idle, 2 s handshake.
# An invalid file first (protocol-timeout twice): the server keeps what it runs with.
printf 'tls-server-max-connections=1\nprotocol-timeout=3\nio-timeout=2\n' >>"$WORK/server.conf"
kill -HUP "$SERVER_PID"
sleep 1.5
assert_contains "$WORK/server.log" "the server keeps the previous one" "a reload of an invalid file is refused"
pk_ok "and the server goes on serving" server-ping
sed -i '/^protocol-timeout=30$/d' "$WORK/server.conf"
kill -HUP "$SERVER_PID"
sleep 1.5
{ printf 'PGKEEP\r\n\0\0\0\3'; sleep 6; } |
	timeout 10 openssl s_client -quiet -connect "127.0.0.1:$PORT" -CAfile "$C/ca.crt" \
		-cert "$C/pgnode.crt" -key "$C/pgnode.key" >/dev/null 2>&1 &
idle_pid=$!
sleep 1
assert_fails "a second connection beyond tls-server-max-connections=1 is refused" pk server-ping
assert_contains "$WORK/server.log" "refused a connection: 1 connections are open" "the server logs the refusal"
wait "$idle_pid" || true
assert_contains "$WORK/server.log" "closing the connection: no request within 3 s" "an idle connection is closed after protocol-timeout"
pk_ok "once the idle connection is gone, a new one is served" server-ping
# A TCP client that never starts the TLS handshake.
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
sleep 3
exec 3>&-
assert_contains "$WORK/server.log" "no answer within 2 s" "a stalled TLS handshake ends after io-timeout"

# A restore opens process-max + 2 connections: the main one, one per worker and one for the block
# lists. A server that refuses the last of them fails the restore before any file is written.
sed -i 's/^tls-server-max-connections=1$/tls-server-max-connections=2/' "$WORK/server.conf"
kill -HUP "$SERVER_PID"
sleep 1.5
rm -rf "$WORK/refused"
as_user mkdir -m 700 "$WORK/refused"
assert_fails "a restore whose block-list connection is refused fails" \
	pk --stanza=main --pg1-path="$WORK/refused" --process-max=1 restore
assert_contains "$PK_ALL" "could not open a connection for block lists" "the error says which connection was refused"
assert_contains "$WORK/server.log" "refused a connection: 2 connections are open" "the server logs the refusal"
assert_eq "$(find "$WORK/refused" -type f | wc -l)" 0 "no file was written"

kill -TERM "$SERVER_PID"
src=0
wait "$SERVER_PID" || src=$?
assert_eq "$src" 0 "SIGTERM stops the server with exit 0"
assert_contains "$WORK/server.log" "pgkeep server stopped" "the server says it stopped"
assert_rc 12 "a client of a stopped server gets a protocol error" pk --stanza=main archive-get "$seg" "$WORK/get/stopped"
assert_contains "$PK_ALL" "could not connect to repository server localhost port $PORT" "and the message says so"

it_done
