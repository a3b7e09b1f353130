/*
 * proto.h: the pgkeep wire protocol (doc/protocol.md): a hello exchange that
 * fixes the version, then frames of type, flags and a bounded payload of
 * typed fields.  It runs over any byte transport given as read and write
 * callbacks: TLS (tls.h), a pipe in unit tests, a buffer in the fuzz target.
 *
 * Everything that comes from the peer is untrusted: each frame's length is
 * checked against PROTO_FRAME_MAX before anything is allocated, and each
 * field's type tag and length are checked as it is read.  A malformed frame
 * or field is ERR_FORMAT with a message naming what is wrong; a failing
 * transport is ERR_PROTOCOL.  An error frame from the peer becomes its
 * error code and message ("server: <message>").
 */
#ifndef PGKEEP_PROTO_H
#define PGKEEP_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_MAGIC "PGKEEP\r\n"             /* 8 bytes, first on the wire from each side */
#define PROTO_MAGIC_LEN 8
#define PROTO_VERSION 3                      /* 2: block-put and block-read carry batches of blocks; dict-get, dict-put;
												 * 3: block-check carries a batch of ids */
#define PROTO_HEADER_LEN 8                   /* type u8, flags u8, reserved u16 = 0, length u32 (big endian) */
#define PROTO_FRAME_MAX (2u * 1024 * 1024)   /* payload bytes: holds the largest stored block */
#define PROTO_STR_MAX 4096                   /* bytes of a string field, terminating NUL included */
#define PROTO_CHUNK (256u * 1024)            /* bytes a client sends in one WRITE or asks for in one READ */
#define PROTO_LIST_MAX 4096                  /* items in one reply of a WAL list (the client pages through) */
#define PROTO_BATCH_MAX 1024                 /* ids in one block-exists, block-read or block-check, blocks in one block-put */
#define PROTO_CHECK_MSG_MAX 1000             /* bytes of one failure's message in a block-check answer (longer ones are cut) */
#define PROTO_BLOCK_OVERHEAD 52              /* bytes of a block record besides its stored data */

/*
 * Frame types.  The client sends requests; the server answers each request
 * with one OK or ERROR frame, except WRITE and BLOCK_PUT, which are not
 * answered (their first failure is the answer to the commit or flush that
 * follows), so that data streams without a round trip per chunk.
 */
typedef enum
{
	PROTO_REQUEST = 1,          /* fields: u32 op, str stanza ("" for none), then the op's fields */
	PROTO_OK = 2,               /* success; the op's result fields */
	PROTO_ERROR = 3,            /* u32 error code, str message */
	PROTO_TYPE_MAX = 3
} proto_type;

/* Request operations (doc/protocol.md lists the fields of each). */
typedef enum
{
	OP_PING = 1,
	OP_STANZA_GET,
	OP_STANZA_CREATE,
	OP_STANZA_LIST,
	OP_WAL_PUT,                 /* begin a WAL put: a handle for WRITE */
	OP_WAL_COMMIT,
	OP_WAL_FIND,
	OP_WAL_OPEN,                /* a handle for READ */
	OP_WAL_LIST,
	OP_BLOCK_EXISTS,
	OP_BLOCK_PUT,               /* a batch of block records; not answered */
	OP_BLOCK_FLUSH,
	OP_BLOCK_READ,              /* a batch of ids; answered with the block records that fit */
	OP_BACKUP_PUT,              /* begin a manifest put: a handle for WRITE */
	OP_BACKUP_COMMIT,
	OP_BACKUP_LIST,
	OP_BACKUP_OPEN,             /* a handle for READ */
	OP_BACKUP_DELETE,
	OP_BLOCKS_HOLD,
	OP_GC,
	OP_WRITE,                   /* bytes of a put; not answered */
	OP_ABORT,                   /* discard a put */
	OP_READ,                    /* the next bytes of an open stream; none at its end */
	OP_READ_CLOSE,              /* close a stream before its end */
	OP_WAL_DELETE,
	OP_BLOCK_CHECK,
	OP_DICT_GET,
	OP_DICT_PUT,
	/* A new op goes here, its name into op_names (proto.c), its fields into proto_request_parse. */
	OP__COUNT
} proto_op;

/* Field type tags. */
enum
{
	PF_U32 = 1, PF_U64 = 2, PF_STR = 3, PF_BYTES = 4
};

/*
 * A byte transport.  read returns 0 with *got = 0 at end of stream; write
 * takes all n bytes, and may hold them until flush, which sends everything
 * written so far (NULL: write sends at once).  Every frame and the hello are
 * flushed before their sender waits for the peer.
 */
typedef struct proto_io
{
	int			(*read) (void *ctx, void *buf, size_t n, size_t *got);
	int			(*write) (void *ctx, const void *buf, size_t n);
	int			(*flush) (void *ctx);
	void	   *ctx;
} proto_io;

/* One frame: its header and payload, and a read cursor for the fields. */
typedef struct proto_msg
{
	uint8_t		type;
	uint8_t		flags;
	uint8_t    *data;           /* payload; grows up to PROTO_FRAME_MAX */
	size_t		len;
	size_t		cap;
	size_t		pos;            /* next field to read */
} proto_msg;

/*
 * Hello: the server sends its magic and version, the client checks them and
 * answers with its own, which the server checks.  The peer's version must be ours.
 */
int			proto_hello(const proto_io *io, bool server);

/* Start building a frame of type (payload emptied). */
void		proto_msg_init(proto_msg *m, proto_type type);
void		proto_msg_free(proto_msg *m);
void		proto_put_u32(proto_msg *m, uint32_t v);
void		proto_put_u64(proto_msg *m, uint64_t v);
/* A string field; s may be NULL (sent as ""). */
void		proto_put_str(proto_msg *m, const char *s);
void		proto_put_bytes(proto_msg *m, const void *p, uint32_t n);
/* Raw payload bytes (DATA frames of a stream carry bytes, not fields). */
void		proto_put_raw(proto_msg *m, const void *p, size_t n);
/* Set the value of the u32 field put at payload offset at (a count known only at the end). */
void		proto_patch_u32(proto_msg *m, size_t at, uint32_t v);

/*
 * A block record, the unit of block-put requests and block-read replies:
 * bytes(32) id, u32 compression type, u32 raw length, bytes stored data
 * (PROTO_BLOCK_OVERHEAD + stored length bytes on the wire).
 */
typedef struct proto_block
{
	uint8_t		id[32];
	uint32_t	ctype;
	uint32_t	raw_len;
	const uint8_t *data;        /* points into the frame */
	uint32_t	len;
} proto_block;

void		proto_put_block(proto_msg *m, const uint8_t id[32], uint32_t ctype, uint32_t raw_len, const void *data,
							uint32_t len);
/*
 * The next block record of m: ERR_FORMAT naming the field when a field is
 * missing or malformed, the compression type unknown, or the raw length 0
 * or above PROTO_FRAME_MAX.
 */
int			proto_get_block(proto_msg *m, proto_block *b);

/* Send m; ERR_INTERNAL when its payload exceeds PROTO_FRAME_MAX (a bug), ERR_PROTOCOL when the transport fails. */
int			proto_send(const proto_io *io, const proto_msg *m);
/* proto_send without the flush: m goes with the next frame sent (one write, one wakeup of the peer). */
int			proto_queue(const proto_io *io, const proto_msg *m);
/* Send an error frame carrying code and message. */
int			proto_send_error(const proto_io *io, int code, const char *message);
/*
 * Receive one frame into m (its buffer is reused).  ERR_PROTOCOL when the
 * transport fails or the peer closed (*closed set when it closed cleanly
 * between frames; closed may be NULL), ERR_FORMAT when the header is invalid.
 */
int			proto_recv(const proto_io *io, proto_msg *m, bool *closed);
/*
 * Receive a reply: an ok frame is 0 with m holding its fields; an error
 * frame becomes the peer's code and message (*peer_error set: the
 * connection is still in step); another frame type is ERR_FORMAT.
 * peer_error may be NULL.
 */
int			proto_recv_reply(const proto_io *io, proto_msg *m, bool *peer_error);

/* The error an error frame carries (its code and message), or ERR_FORMAT with *malformed set. */
int			proto_error_decode(proto_msg *m, bool *malformed);

/* Field readers: ERR_FORMAT naming what when the next field is missing, of another type or out of bounds. */
int			proto_get_u32(proto_msg *m, const char *what, uint32_t *v);
int			proto_get_u64(proto_msg *m, const char *what, uint64_t *v);
/* A string: *s points into m's payload (NUL-terminated, no NUL inside, at most PROTO_STR_MAX bytes). */
int			proto_get_str(proto_msg *m, const char *what, const char **s);
/* Bytes: *p points into m's payload. */
int			proto_get_bytes(proto_msg *m, const char *what, const uint8_t **p, uint32_t *n);
/* Bytes of exactly n (an id or a hash). */
int			proto_get_fixed(proto_msg *m, const char *what, uint8_t *out, uint32_t n);
/* ERR_FORMAT when fields are left unread (a frame says exactly what it means). */
int			proto_get_end(proto_msg *m, const char *what);

/*
 * A request as the server reads it (proto_request_parse).  Strings point
 * into the frame; which fields an op carries is listed in doc/protocol.md.
 */
typedef struct proto_request
{
	uint32_t	op;
	const char *stanza;         /* "" when the op needs none */
	const char *name;           /* WAL file name or backup label, "" when none */
	uint8_t		hash[32];       /* WAL content hash or block id */
	uint32_t	ctype;          /* compression type (0 none, 1 zst, 2 lz4) */
	uint32_t	count;          /* block-put: block records in data; block-exists, block-read: ids in data */
	const uint8_t *data;        /* block-put: the block records (all checked); write: the bytes; block-exists, block-read: the ids */
	uint32_t	data_len;
	uint32_t	dry_run;        /* gc */
	uint32_t	handle;         /* write, wal-commit, backup-commit, abort, read, read-close */
	uint32_t	max;            /* read: most bytes wanted */
	uint64_t	skip;           /* wal-list: items to skip (paging) */
	/* stanza-create */
	uint64_t	system_id, created;
	uint32_t	pg_version, control_version, catalog_version, wal_segment_size, block_size;
} proto_request;

/*
 * Parse and validate a request frame: the op is known, every field of the
 * op is present with its type and nothing follows; the stanza and names are
 * 1 to 63 (stanza 64) characters of [A-Za-z0-9._-] not starting with '.'
 * and without "..", compression types are known.  ERR_FORMAT naming the
 * field otherwise.
 */
int			proto_request_parse(proto_msg *m, proto_request *req);
/* The same name rule, for the client side (what names "what" in the message). */
int			proto_check_name(const char *name, size_t max, bool empty_ok, const char *what);

/* A readable name of a frame type and an operation ("request", "wal-put"), for messages. */
const char *proto_type_name(int type);
const char *proto_op_name(int op);

#endif
