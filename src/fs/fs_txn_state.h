/* fs_txn_state.h - the transaction state of one open action handle (design.md section 2), as pure
 * transitions: no FUSE, no api, no buffers. fs_txn.c and bench/nullfs.c (the baseline daemon)
 * both drive one of these per handle, so the two cannot drift apart; tests/unit/test-txn-state.c
 * checks the table.
 *
 *   event          IDLE          WRITING       REFUSED       ANSWERED      READING
 *   open           IDLE, or ANSWERED when the open took an answer from a mailbox
 *   write          WRITING new   WRITING more  REFUSED fail  WRITING new   WRITING new
 *   write refused  -             REFUSED       -             -             -
 *   read           run, READING  run, READING  run, READING  READING (1)   READING
 *   flush, fsync   -             run, report   run, report   report        report
 *   release        -             run           run           -             -
 *
 * "run": the caller runs the request (IDLE: an empty one; REFUSED: it answers the refusal
 * instead) and reports the outcome with fs_txn_on_answer (-> ANSWERED); a run at release, or at
 * a flush or fsync of a write-only handle (no read of this handle can ask for it), moves the
 * answer to the opener uid's mailbox; an fsync of a readable handle leaves it for its read. "report": the flush (fsync) returns the answer's error, once. (1) or ESPIPE, staying
 * ANSWERED (fs_txn_on_read). Only write-only handles get flushes (fs_txn_needs_flush): a handle
 * that can read its answer closes without a round trip, and what it left unread runs at the
 * (asynchronous) release. The caller holds the handle's lock around every call. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

enum fs_txn_state {
	/* Opened; nothing written, no answer: a read runs an empty request. */
	FS_TXN_IDLE,
	/* A request is being written: it runs at the next read or flush. */
	FS_TXN_WRITING,
	/* A write of the request was refused: it answers the refusal, never runs. */
	FS_TXN_REFUSED,
	/* An answer waits for its first read. */
	FS_TXN_ANSWERED,
	/* The answer is being read; read_base is where it starts in the file. */
	FS_TXN_READING,
};

/* Error codes here are the caller's (kmsfs: KMS_E_*, nullfs: errno); 0 means none. */
struct fs_txn_sm {
	enum fs_txn_state state;
	/* FS_TXN_REFUSED: why the write was refused. */
	int refusal;
	/* The answer's error, until a flush has reported it. */
	int answer_err;
	/* FS_TXN_READING: the file offset of the answer's first byte. */
	off_t read_base;
};

/* What the caller does with a write (fs_txn_on_write). */
enum fs_txn_write {
	/* A new request: drop the last request and answer, then append. */
	FS_TXN_WRITE_FIRST,
	/* Append to the request being written. */
	FS_TXN_WRITE_MORE,
	/* Fail the write as the refused one did (m->refusal); append nothing. */
	FS_TXN_WRITE_REFUSED,
};

/* The handle was opened: IDLE, or ANSWERED (no error) when the open took an answer from a mailbox
 * (read-only opens of the shell pattern). */
void fs_txn_on_open(struct fs_txn_sm *m, bool took_answer);

/* A write came. IDLE, ANSWERED, READING -> WRITING (FIRST: a write after an answer starts the next
 * request on the handle); WRITING stays (MORE); REFUSED stays (REFUSED: the request can't be
 * completed any more). */
enum fs_txn_write fs_txn_on_write(struct fs_txn_sm *m);

/* A write could not be taken (why: nonzero): WRITING -> REFUSED. The request is now incomplete:
 * it must answer why, never run with what was taken. */
void fs_txn_on_write_refused(struct fs_txn_sm *m, int why);

/* Must a read run the request before it is served? True in IDLE (no request and no mailbox: the
 * action runs with an empty request), WRITING and REFUSED. No transition: the run makes it. */
bool fs_txn_read_runs(const struct fs_txn_sm *m);

/* Does a handle opened so need a FLUSH at each close (else the open reply says FOPEN_NOFLUSH)?
 * Only a write-only one: close() is where it learns its request's outcome (`echo "$req" > f`
 * fails with the errno), and its answer must be in the mailbox before close() returns, for the
 * `cat f` that follows. A readable handle reads its answer (the JSON says how it went); a FLUSH
 * would only cost it a synchronous round trip per close. */
bool fs_txn_needs_flush(bool readable, bool writable);

/* Must a flush or an fsync run the request? True in WRITING and REFUSED: a request runs at the
 * first read after it was written, or at flush or fsync, whichever comes first. */
bool fs_txn_flush_runs(const struct fs_txn_sm *m);

/* Must the release run the request? True in WRITING and REFUSED: written, and neither read nor
 * flushed (a readable handle, which gets no FLUSH; or a write-only one whose close raced a
 * write). The answer goes to the mailbox; nobody waits for it (RELEASE is asynchronous). */
bool fs_txn_release_runs(const struct fs_txn_sm *m);

/* The request ran (or answered its refusal, or an error before it could run) with err (0: none):
 * any state -> ANSWERED. The next flush reports err. */
void fs_txn_on_answer(struct fs_txn_sm *m, int err);

/* A read at file offset off came, after any run fs_txn_read_runs asked for (ANSWERED or READING),
 * for an answer of len bytes. Sets *pos, where in the answer the read starts (len or more: at its
 * end), and returns 0; or returns ESPIPE and changes nothing.
 * ANSWERED -> READING: the first read fixes where the answer starts. A handle that wrote its
 * request (writable) reads it from its first read's offset, whatever that is (a shell's `exec
 * 3<>f; printf … >&3; cat <&3` reads from the end of its request). A read-only handle reads it
 * like a regular file, from offset 0; a first read past its end sought there from st_size, which
 * is only a bound (`tail` seeks to st_size minus a block): ESPIPE, so it fails loudly rather than
 * print nothing. READING stays. */
int fs_txn_on_read(struct fs_txn_sm *m, bool writable, off_t off, size_t len, size_t *pos);

/* A flush (close) or fsync came, after any run fs_txn_flush_runs asked for: the answer's error to
 * report to it, or 0. A failed request is reported once, to the first close after it ran (dup'd
 * descriptors: the others get 0). No change of state. */
int fs_txn_on_flush(struct fs_txn_sm *m);
