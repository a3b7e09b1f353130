/*
 * option_table.h: every option pgkeep knows, declared once.
 *
 * OPT(ID, name, type, default, allowed, commands, flags, help)
 *   ID        suffix of the enum value OPT_<ID>
 *   name      the option name without "--"; for indexed options the name
 *             without the index ("pg-path" is given as pg1-path .. pg8-path)
 *   type      OT_STRING, OT_PATH, OT_BOOL, OT_INT, OT_SIZE, OT_TIME, OT_ENUM, OT_LIST, OT_HASH
 *   default   default value as text, or NULL for none
 *   allowed   for OT_ENUM a "|"-separated list of values; for OT_INT "min:max"; else NULL
 *   commands  mask of CMDBIT(CMD_...) where the option applies; C_ALL for all
 *   flags     OF_* below
 *   help      one sentence for help and doc/options.md
 *
 * This file is included with OPT defined by its user; do not add guards.
 */

#define C_ALL 0xffffffffu
#define C_PG (CMDBIT(CMD_ARCHIVE_PUSH) | CMDBIT(CMD_ARCHIVE_GET) | CMDBIT(CMD_BACKUP) | CMDBIT(CMD_CHECK) | CMDBIT(CMD_RESTORE) | CMDBIT(CMD_STANZA_CREATE) | CMDBIT(CMD_STANZA_UPGRADE) | CMDBIT(CMD_STANZA_DELETE))
#define C_REPO (CMDBIT(CMD_ARCHIVE_PUSH) | CMDBIT(CMD_ARCHIVE_GET) | CMDBIT(CMD_BACKUP) | CMDBIT(CMD_CHECK) | CMDBIT(CMD_EXPIRE) | CMDBIT(CMD_INFO) | CMDBIT(CMD_RESTORE) | CMDBIT(CMD_STANZA_CREATE) | CMDBIT(CMD_STANZA_UPGRADE) | CMDBIT(CMD_STANZA_DELETE) | CMDBIT(CMD_VERIFY) | CMDBIT(CMD_SERVER) | CMDBIT(CMD_SERVER_PING) | CMDBIT(CMD_START) | CMDBIT(CMD_STOP))
#define C_STANZA (C_REPO & ~(CMDBIT(CMD_INFO) | CMDBIT(CMD_SERVER) | CMDBIT(CMD_SERVER_PING) | CMDBIT(CMD_START) | CMDBIT(CMD_STOP)))
#define C_BACKUP CMDBIT(CMD_BACKUP)
#define C_RESTORE CMDBIT(CMD_RESTORE)
#define C_ARCHIVE (CMDBIT(CMD_ARCHIVE_PUSH) | CMDBIT(CMD_ARCHIVE_GET) | CMDBIT(CMD_CHECK) | CMDBIT(CMD_BACKUP))
#define C_SERVER (CMDBIT(CMD_SERVER) | CMDBIT(CMD_SERVER_PING))

/* general */
OPT(CONFIG, "config", OT_PATH, "/etc/pgkeep/pgkeep.conf", NULL, C_ALL, OF_CMDLINE_ONLY, "Configuration file to read.")
OPT(CONFIG_PATH, "config-path", OT_PATH, NULL, NULL, C_ALL, OF_CMDLINE_ONLY | OF_NOT_YET, "Base path of configuration files.")
OPT(CONFIG_INCLUDE_PATH, "config-include-path", OT_PATH, NULL, NULL, C_ALL, OF_CMDLINE_ONLY | OF_NOT_YET, "Path of additional configuration files.")
OPT(STANZA, "stanza", OT_STRING, NULL, NULL, C_ALL, OF_CMDLINE_ONLY, "Name of the cluster's configuration in the repository.")
OPT(OUTPUT, "output", OT_ENUM, "text", "text|json", CMDBIT(CMD_INFO) | CMDBIT(CMD_VERIFY), 0, "Output format.")
OPT(LOCK_PATH, "lock-path", OT_PATH, "/tmp/pgkeep", NULL, C_ALL, 0, "Directory for lock files.")
OPT(NEUTRAL_UMASK, "neutral-umask", OT_BOOL, "y", NULL, C_ALL, 0, "Use umask 0027 so that files pgkeep creates are not readable by other users.")
OPT(BUFFER_SIZE, "buffer-size", OT_SIZE, "1MiB", NULL, C_ALL, OF_NOT_YET, "Size of I/O buffers (pgkeep sizes its buffers itself).")
OPT(PROCESS_MAX, "process-max", OT_INT, "1", "1:64", C_ALL, 0, "Worker threads of backup and restore; archive-push compresses a WAL file with this many threads.")
OPT(DB_TIMEOUT, "db-timeout", OT_TIME, "1800", NULL, C_PG, 0, "Timeout of queries to PostgreSQL, in seconds.")
OPT(IO_TIMEOUT, "io-timeout", OT_TIME, "60", NULL, C_ALL, 0, "Timeout of network connects, TLS handshakes and of each read and write while a request streams, in seconds.")
OPT(PROTOCOL_TIMEOUT, "protocol-timeout", OT_TIME, "1830", NULL, C_ALL, 0, "Timeout of a reply from the repository server, and how long the server keeps an idle connection, in seconds.")
OPT(COMPRESS, "compress", OT_BOOL, NULL, NULL, C_ALL, OF_NOT_YET, "Deprecated; use compress-type.")
OPT(COMPRESS_TYPE, "compress-type", OT_ENUM, "zst", "none|zst|lz4|gz|bz2", C_ALL, 0, "Compression of WAL and backup blocks (gz and bz2 are read as zst with a warning).")
OPT(COMPRESS_LEVEL, "compress-level", OT_INT, NULL, "-5:19", C_ALL, 0, "Compression level (default 3 for zst, 1 for lz4).")
OPT(COMPRESS_LEVEL_NETWORK, "compress-level-network", OT_INT, NULL, "0:9", C_ALL, OF_NOT_YET, "Network compression level.")
/* logging */
OPT(LOG_LEVEL_CONSOLE, "log-level-console", OT_ENUM, "warn", "off|error|warn|info|detail|debug|trace", C_ALL, 0, "Level of messages printed on the console.")
OPT(LOG_LEVEL_STDERR, "log-level-stderr", OT_ENUM, "off", "off|error|warn|info|detail|debug|trace", C_ALL, 0, "Level of messages written to stderr.")
OPT(LOG_LEVEL_FILE, "log-level-file", OT_ENUM, "info", "off|error|warn|info|detail|debug|trace", C_ALL, 0, "Level of messages written to the log file.")
OPT(LOG_PATH, "log-path", OT_PATH, "/var/log/pgkeep", NULL, C_ALL, 0, "Directory of log files (STANZA-COMMAND.log).")
OPT(LOG_TIMESTAMP, "log-timestamp", OT_BOOL, "y", NULL, C_ALL, OF_NOT_YET, "Timestamps in log lines.")
OPT(LOG_SUBPROCESS, "log-subprocess", OT_BOOL, "n", NULL, C_ALL, OF_NOT_YET, "Log worker processes.")
/* repository */
OPT(REPO, "repo", OT_INT, NULL, "1:4", C_REPO, 0, "Repository index to use.")
OPT(REPO_PATH, "repo-path", OT_PATH, "/var/lib/pgkeep", NULL, C_REPO, OF_INDEXED_REPO, "Path of the repository.")
OPT(REPO_TYPE, "repo-type", OT_ENUM, "posix", "posix|cifs", C_REPO, OF_INDEXED_REPO, "Storage type of the repository.")
OPT(REPO_HOST, "repo-host", OT_STRING, NULL, NULL, C_REPO, OF_INDEXED_REPO, "Host of the repository server (pgkeep server); when set, the client needs no repo-path.")
OPT(REPO_HOST_USER, "repo-host-user", OT_STRING, NULL, NULL, C_REPO, OF_INDEXED_REPO | OF_NOT_YET, "User on the repository host.")
OPT(REPO_HOST_PORT, "repo-host-port", OT_INT, NULL, "1:65535", C_REPO, OF_INDEXED_REPO, "Port of the repository server (default 8432, as tls-server-port).")
OPT(REPO_HOST_TYPE, "repo-host-type", OT_ENUM, "ssh", "ssh|tls", C_REPO, OF_INDEXED_REPO, "Transport to the repository host (only tls is supported yet).")
OPT(REPO_HOST_CONFIG, "repo-host-config", OT_PATH, NULL, NULL, C_REPO, OF_INDEXED_REPO | OF_NOT_YET, "Configuration file on the repository host.")
OPT(REPO_HOST_CMD, "repo-host-cmd", OT_PATH, NULL, NULL, C_REPO, OF_INDEXED_REPO | OF_NOT_YET, "Command on the repository host.")
OPT(REPO_HOST_CERT_FILE, "repo-host-cert-file", OT_PATH, NULL, NULL, C_REPO, OF_INDEXED_REPO, "Client certificate (PEM) presented to the repository server.")
OPT(REPO_HOST_KEY_FILE, "repo-host-key-file", OT_PATH, NULL, NULL, C_REPO, OF_INDEXED_REPO, "Key (PEM) of the client certificate.")
OPT(REPO_HOST_CA_FILE, "repo-host-ca-file", OT_PATH, NULL, NULL, C_REPO, OF_INDEXED_REPO, "Certificate authority (PEM) that signed the repository server's certificate (default: the system's).")
OPT(REPO_RETENTION_FULL, "repo-retention-full", OT_INT, NULL, "1:9999999", C_REPO, OF_INDEXED_REPO, "Full backups to keep (count), or days (time): see doc/expire.md.")
OPT(REPO_RETENTION_FULL_TYPE, "repo-retention-full-type", OT_ENUM, "count", "count|time", C_REPO, OF_INDEXED_REPO, "Whether repo-retention-full counts backups or days.")
OPT(REPO_RETENTION_DIFF, "repo-retention-diff", OT_INT, NULL, "1:9999999", C_REPO, OF_INDEXED_REPO, "Differential backups to keep (incrementals taken after an expired one go with it).")
OPT(REPO_RETENTION_ARCHIVE, "repo-retention-archive", OT_INT, NULL, "1:9999999", C_REPO, OF_INDEXED_REPO | OF_NOT_YET, "Backups whose WAL is kept.")
OPT(REPO_RETENTION_ARCHIVE_TYPE, "repo-retention-archive-type", OT_ENUM, "full", "full|diff|incr", C_REPO, OF_INDEXED_REPO | OF_NOT_YET, "Backup type that repo-retention-archive counts.")
OPT(REPO_RETENTION_HISTORY, "repo-retention-history", OT_INT, NULL, "0:9999999", C_REPO, OF_INDEXED_REPO | OF_NOT_YET, "Days of backup history to keep.")
OPT(REPO_CIPHER_TYPE, "repo-cipher-type", OT_ENUM, "none", "none|aes-256-cbc", C_REPO, OF_INDEXED_REPO | OF_NOT_YET, "Encryption of the repository.")
OPT(REPO_CIPHER_PASS, "repo-cipher-pass", OT_STRING, NULL, NULL, C_REPO, OF_INDEXED_REPO | OF_SECRET | OF_NOT_YET, "Passphrase of the repository encryption.")
OPT(REPO_BUNDLE, "repo-bundle", OT_BOOL, NULL, NULL, C_REPO, OF_INDEXED_REPO | OF_NOT_YET, "Bundle small files (the block store always packs).")
OPT(REPO_BLOCK, "repo-block", OT_BOOL, NULL, NULL, C_REPO, OF_INDEXED_REPO | OF_NOT_YET, "Block incremental (the block store always works by block).")
/* PostgreSQL */
OPT(PG, "pg", OT_INT, NULL, "1:8", C_PG, 0, "PostgreSQL index to use.")
OPT(PG_PATH, "pg-path", OT_PATH, NULL, NULL, C_PG, OF_INDEXED_PG, "Data directory of the cluster.")
OPT(PG_PORT, "pg-port", OT_INT, "5432", "1:65535", C_PG, OF_INDEXED_PG, "Port of the cluster.")
OPT(PG_SOCKET_PATH, "pg-socket-path", OT_PATH, NULL, NULL, C_PG, OF_INDEXED_PG, "Unix socket directory of the cluster.")
OPT(PG_USER, "pg-user", OT_STRING, NULL, NULL, C_PG, OF_INDEXED_PG, "Database user for backup queries.")
OPT(PG_DATABASE, "pg-database", OT_STRING, "postgres", NULL, C_PG, OF_INDEXED_PG, "Database to connect to.")
OPT(PG_HOST, "pg-host", OT_STRING, NULL, NULL, C_PG, OF_INDEXED_PG | OF_NOT_YET, "Host of the cluster, for backups from the repository host.")
OPT(PG_HOST_USER, "pg-host-user", OT_STRING, NULL, NULL, C_PG, OF_INDEXED_PG | OF_NOT_YET, "User on the cluster's host.")
OPT(PG_HOST_PORT, "pg-host-port", OT_INT, NULL, "1:65535", C_PG, OF_INDEXED_PG | OF_NOT_YET, "Port on the cluster's host.")
OPT(PG_HOST_TYPE, "pg-host-type", OT_ENUM, "ssh", "ssh|tls", C_PG, OF_INDEXED_PG | OF_NOT_YET, "Transport to the cluster's host.")
OPT(PG_HOST_CONFIG, "pg-host-config", OT_PATH, NULL, NULL, C_PG, OF_INDEXED_PG | OF_NOT_YET, "Configuration file on the cluster's host.")
OPT(PG_HOST_CMD, "pg-host-cmd", OT_PATH, NULL, NULL, C_PG, OF_INDEXED_PG | OF_NOT_YET, "Command on the cluster's host.")
OPT(PG_HOST_CERT_FILE, "pg-host-cert-file", OT_PATH, NULL, NULL, C_PG, OF_INDEXED_PG | OF_NOT_YET, "Client certificate for the cluster's host.")
OPT(PG_HOST_KEY_FILE, "pg-host-key-file", OT_PATH, NULL, NULL, C_PG, OF_INDEXED_PG | OF_NOT_YET, "Client key for the cluster's host.")
OPT(PG_HOST_CA_FILE, "pg-host-ca-file", OT_PATH, NULL, NULL, C_PG, OF_INDEXED_PG | OF_NOT_YET, "Certificate authority for the cluster's host.")
/* archive */
OPT(ARCHIVE_CHECK, "archive-check", OT_BOOL, "y", NULL, C_BACKUP, 0, "Wait until the backup's WAL is in the repository.")
OPT(ARCHIVE_COPY, "archive-copy", OT_BOOL, "n", NULL, C_BACKUP, OF_NOT_YET, "Copy the backup's WAL into the backup.")
OPT(ARCHIVE_TIMEOUT, "archive-timeout", OT_TIME, "60", NULL, C_ARCHIVE, 0, "Seconds to wait for WAL to reach the repository.")
OPT(ARCHIVE_ASYNC, "archive-async", OT_BOOL, "n", NULL, C_ARCHIVE, OF_NOT_YET, "Push and get WAL asynchronously through the spool.")
OPT(ARCHIVE_PUSH_QUEUE_MAX, "archive-push-queue-max", OT_SIZE, NULL, NULL, C_ARCHIVE, OF_NOT_YET, "Most WAL to queue before dropping.")
OPT(ARCHIVE_GET_QUEUE_MAX, "archive-get-queue-max", OT_SIZE, NULL, NULL, C_ARCHIVE, OF_NOT_YET, "Most WAL to prefetch.")
OPT(ARCHIVE_MODE_CHECK, "archive-mode-check", OT_BOOL, "y", NULL, C_ARCHIVE, OF_NOT_YET, "Check archive_mode.")
OPT(SPOOL_PATH, "spool-path", OT_PATH, "/var/spool/pgkeep", NULL, C_ARCHIVE, 0, "Directory of the asynchronous archive spool.")
/* backup */
OPT(TYPE, "type", OT_ENUM, NULL, "full|diff|incr|default|immediate|time|xid|lsn|name|standby|none|preserve", CMDBIT(CMD_BACKUP) | CMDBIT(CMD_RESTORE), 0, "Backup type (full, diff, incr) or recovery type of a restore.")
OPT(START_FAST, "start-fast", OT_BOOL, "n", NULL, C_BACKUP, 0, "Ask PostgreSQL for an immediate checkpoint at backup start.")
OPT(STOP_AUTO, "stop-auto", OT_BOOL, "n", NULL, C_BACKUP, OF_NOT_YET, "Stop a previous backup left running.")
OPT(CHECKSUM_PAGE, "checksum-page", OT_BOOL, NULL, NULL, C_BACKUP, 0, "Verify data-page checksums (default: when the cluster has them).")
OPT(BACKUP_STANDBY, "backup-standby", OT_BOOL, "n", NULL, C_BACKUP, OF_NOT_YET, "Copy files from a standby.")
OPT(RESUME, "resume", OT_BOOL, "y", NULL, C_BACKUP, OF_NOT_YET, "Resume a failed backup (the block store keeps what it stored).")
OPT(MANIFEST_SAVE_THRESHOLD, "manifest-save-threshold", OT_SIZE, NULL, NULL, C_BACKUP, OF_NOT_YET, "Manifest save threshold.")
OPT(EXPIRE_AUTO, "expire-auto", OT_BOOL, "y", NULL, C_BACKUP, 0, "Run expire after each successful backup (doc/expire.md).")
OPT(EXCLUDE, "exclude", OT_LIST, NULL, NULL, C_BACKUP, OF_NOT_YET, "Paths to leave out of backups.")
OPT(ANNOTATION, "annotation", OT_HASH, NULL, NULL, C_BACKUP, OF_NOT_YET, "Notes kept with the backup.")
OPT(DELTA, "delta", OT_BOOL, "n", NULL, C_BACKUP | C_RESTORE, 0, "Backup: read every file; restore: rewrite only what differs.")
OPT(FORCE, "force", OT_BOOL, "n", NULL, C_RESTORE | CMDBIT(CMD_STANZA_CREATE) | CMDBIT(CMD_STANZA_DELETE) | CMDBIT(CMD_STOP), 0, "Restore: overwrite a non-empty data directory.")
/* restore */
OPT(SET, "set", OT_STRING, "latest", NULL, C_RESTORE | CMDBIT(CMD_INFO) | CMDBIT(CMD_VERIFY) | CMDBIT(CMD_EXPIRE), 0, "Backup label to use (expire: the one backup to remove).")
OPT(TARGET, "target", OT_STRING, NULL, NULL, C_RESTORE, 0, "Recovery target (time, xid, lsn or name).")
OPT(TARGET_ACTION, "target-action", OT_ENUM, "pause", "pause|promote|shutdown", C_RESTORE, 0, "What PostgreSQL does when it reaches the target.")
OPT(TARGET_TIMELINE, "target-timeline", OT_STRING, NULL, NULL, C_RESTORE, 0, "Timeline to recover along (current, latest or a number).")
OPT(TARGET_EXCLUSIVE, "target-exclusive", OT_BOOL, "n", NULL, C_RESTORE, 0, "Stop just before the target.")
OPT(RECOVERY_OPTION, "recovery-option", OT_HASH, NULL, NULL, C_RESTORE, 0, "Extra recovery settings, key=value, may repeat.")
OPT(TABLESPACE_MAP, "tablespace-map", OT_HASH, NULL, NULL, C_RESTORE, 0, "Restore a tablespace elsewhere: name-or-oid=path, may repeat.")
OPT(TABLESPACE_MAP_ALL, "tablespace-map-all", OT_PATH, NULL, NULL, C_RESTORE, 0, "Restore all tablespaces under this directory.")
OPT(LINK_ALL, "link-all", OT_BOOL, "n", NULL, C_RESTORE, OF_NOT_YET, "Restore all symlinks.")
OPT(LINK_MAP, "link-map", OT_HASH, NULL, NULL, C_RESTORE, OF_NOT_YET, "Restore a symlink elsewhere.")
OPT(DB_INCLUDE, "db-include", OT_LIST, NULL, NULL, C_RESTORE, OF_NOT_YET, "Restore only these databases.")
OPT(ARCHIVE_MODE, "archive-mode", OT_ENUM, "preserve", "preserve|off", C_RESTORE, OF_NOT_YET, "archive_mode of the restored cluster.")
/* verify */
OPT(FAST, "fast", OT_BOOL, "n", NULL, CMDBIT(CMD_VERIFY), 0, "Only check that every block and WAL file is stored, without reading them back.")
/* expire */
OPT(DRY_RUN, "dry-run", OT_BOOL, "n", NULL, CMDBIT(CMD_EXPIRE), 0, "Print what expire would remove, and change nothing.")
/* server */
OPT(TLS_SERVER_ADDRESS, "tls-server-address", OT_STRING, "localhost", NULL, C_SERVER, 0, "Address the server listens on (* for every address).")
OPT(TLS_SERVER_PORT, "tls-server-port", OT_INT, "8432", "1:65535", C_SERVER, 0, "Port the server listens on.")
OPT(TLS_SERVER_CERT_FILE, "tls-server-cert-file", OT_PATH, NULL, NULL, C_SERVER, 0, "Server certificate (PEM).")
OPT(TLS_SERVER_KEY_FILE, "tls-server-key-file", OT_PATH, NULL, NULL, C_SERVER, 0, "Key (PEM) of the server certificate.")
OPT(TLS_SERVER_CA_FILE, "tls-server-ca-file", OT_PATH, NULL, NULL, C_SERVER, 0, "Certificate authority (PEM) that signs client certificates.")
OPT(TLS_SERVER_AUTH, "tls-server-auth", OT_HASH, NULL, NULL, C_SERVER, 0, "Client certificate CN=stanzas it may use (comma-separated, or *); may repeat, one per client.")
OPT(TLS_SERVER_MAX_CONNECTIONS, "tls-server-max-connections", OT_INT, "32", "1:1024", C_SERVER, 0, "Most client connections served at once; more are closed at once.")
OPT(TLS_SERVER_ALLOW_ROOT, "tls-server-allow-root", OT_BOOL, "n", NULL, C_SERVER, 0, "Let the server run as root (it refuses by default).")
