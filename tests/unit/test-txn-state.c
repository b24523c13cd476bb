/* test-txn-state.c - the transaction state machine of an action handle (src/fs/fs_txn_state.h),
 * which kmsfs (fs_txn.c) and the bench's null daemon (bench/nullfs.c) share: the whole table of
 * events by state, the read offsets, and the report of a failed request to one close. */
#include "kms_test.h"

#include <errno.h>

#include "fs/fs_txn_state.h"

#define ERR_A (-7) /* an answer's error, in the caller's codes */
#define ERR_R (-9) /* a write's refusal */

/* A handle brought into state s by the events that lead there (never by setting fields). */
static struct fs_txn_sm at(enum fs_txn_state s)
{
	struct fs_txn_sm m;
	size_t pos;

	fs_txn_on_open(&m, false);
	switch (s) {
	case FS_TXN_IDLE:
		break;
	case FS_TXN_WRITING:
		(void)fs_txn_on_write(&m);
		break;
	case FS_TXN_REFUSED:
		(void)fs_txn_on_write(&m);
		fs_txn_on_write_refused(&m, ERR_R);
		break;
	case FS_TXN_ANSWERED:
		(void)fs_txn_on_write(&m);
		fs_txn_on_answer(&m, 0);
		break;
	case FS_TXN_READING:
		(void)fs_txn_on_write(&m);
		fs_txn_on_answer(&m, 0);
		(void)fs_txn_on_read(&m, true, 0, 400, &pos);
		break;
	}
	return m;
}

static const enum fs_txn_state all[] = { FS_TXN_IDLE, FS_TXN_WRITING, FS_TXN_REFUSED,
					 FS_TXN_ANSWERED, FS_TXN_READING };

TEST(open)
{
	struct fs_txn_sm m;

	fs_txn_on_open(&m, false);
	ASSERT_EQ(m.state, FS_TXN_IDLE);
	ASSERT_EQ(fs_txn_on_flush(&m), 0);
	/* A read-only open that took a mailbox's answer serves it: nothing runs. */
	fs_txn_on_open(&m, true);
	ASSERT_EQ(m.state, FS_TXN_ANSWERED);
	ASSERT_FALSE(fs_txn_read_runs(&m));
	ASSERT_FALSE(fs_txn_flush_runs(&m));
	ASSERT_EQ(fs_txn_on_flush(&m), 0);
}

TEST(every_state_reached)
{
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		struct fs_txn_sm m = at(all[i]);

		ASSERT_EQ(m.state, all[i]);
	}
}

/* The table's write row: a new request after an answer (or on a fresh handle), more of the same
 * request, or the refusal again. */
TEST(write_row)
{
	static const struct {
		enum fs_txn_state from, to;
		enum fs_txn_write step;
	} row[] = {
		{ FS_TXN_IDLE, FS_TXN_WRITING, FS_TXN_WRITE_FIRST },
		{ FS_TXN_WRITING, FS_TXN_WRITING, FS_TXN_WRITE_MORE },
		{ FS_TXN_REFUSED, FS_TXN_REFUSED, FS_TXN_WRITE_REFUSED },
		{ FS_TXN_ANSWERED, FS_TXN_WRITING, FS_TXN_WRITE_FIRST },
		{ FS_TXN_READING, FS_TXN_WRITING, FS_TXN_WRITE_FIRST },
	};

	for (size_t i = 0; i < sizeof(row) / sizeof(row[0]); i++) {
		struct fs_txn_sm m = at(row[i].from);

		ASSERT_EQ(fs_txn_on_write(&m), row[i].step);
		ASSERT_EQ(m.state, row[i].to);
	}
	/* The refusal stays what the failed write was refused for. */
	{
		struct fs_txn_sm m = at(FS_TXN_REFUSED);

		ASSERT_EQ(fs_txn_on_write(&m), FS_TXN_WRITE_REFUSED);
		ASSERT_EQ(m.refusal, ERR_R);
	}
}

/* Only a request being written can be refused. */
TEST(write_refused_row)
{
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		struct fs_txn_sm m = at(all[i]);

		fs_txn_on_write_refused(&m, -1);
		ASSERT_EQ(m.state, all[i] == FS_TXN_WRITING ? FS_TXN_REFUSED : all[i]);
	}
}

/* Which events run the request: a read runs whatever has no answer yet (IDLE: an empty request);
 * a flush, an fsync or the release only a written one (the release: one that no read or flush
 * ran, so readable handles, which get no FLUSH, still run what they wrote). */
TEST(run_rows)
{
	static const struct {
		enum fs_txn_state s;
		bool read_runs, flush_runs, release_runs;
	} row[] = {
		{ FS_TXN_IDLE, true, false, false },	 { FS_TXN_WRITING, true, true, true },
		{ FS_TXN_REFUSED, true, true, true },	 { FS_TXN_ANSWERED, false, false, false },
		{ FS_TXN_READING, false, false, false },
	};

	for (size_t i = 0; i < sizeof(row) / sizeof(row[0]); i++) {
		struct fs_txn_sm m = at(row[i].s);

		ASSERT_EQ(fs_txn_read_runs(&m), row[i].read_runs);
		ASSERT_EQ(fs_txn_flush_runs(&m), row[i].flush_runs);
		ASSERT_EQ(fs_txn_release_runs(&m), row[i].release_runs);
		fs_txn_on_answer(&m, 0);
		ASSERT_EQ(m.state, FS_TXN_ANSWERED);
		ASSERT_FALSE(fs_txn_read_runs(&m));
		ASSERT_FALSE(fs_txn_flush_runs(&m));
		ASSERT_FALSE(fs_txn_release_runs(&m));
	}
}

/* A refused request answers its refusal; the handle takes a new request afterwards. */
TEST(refused_then_new_request)
{
	struct fs_txn_sm m = at(FS_TXN_REFUSED);

	ASSERT_TRUE(fs_txn_flush_runs(&m));
	ASSERT_EQ(m.refusal, ERR_R);
	fs_txn_on_answer(&m, m.refusal);
	ASSERT_EQ(m.refusal, 0);
	ASSERT_EQ(fs_txn_on_flush(&m), ERR_R);
	ASSERT_EQ(fs_txn_on_write(&m), FS_TXN_WRITE_FIRST);
	ASSERT_EQ(m.state, FS_TXN_WRITING);
}

/* A failed request is reported to the first close after it ran, whether a read or the flush ran
 * it, and to no later close (dup'd descriptors); a read does not use the report up. */
TEST(error_reported_once)
{
	struct fs_txn_sm m = at(FS_TXN_WRITING);
	size_t pos;

	ASSERT_EQ(fs_txn_on_flush(&m), 0); /* before the run: nothing to report (the caller runs) */
	fs_txn_on_answer(&m, ERR_A);
	ASSERT_EQ(fs_txn_on_read(&m, true, 0, 100, &pos), 0);
	ASSERT_EQ(fs_txn_on_flush(&m), ERR_A);
	ASSERT_EQ(fs_txn_on_flush(&m), 0);
	ASSERT_EQ(m.state, FS_TXN_READING);

	/* The next request on the handle is reported on its own. */
	ASSERT_EQ(fs_txn_on_write(&m), FS_TXN_WRITE_FIRST);
	fs_txn_on_answer(&m, ERR_A);
	ASSERT_EQ(fs_txn_on_flush(&m), ERR_A);
	/* A request that fails, then one that succeeds before any close: nothing to report. */
	ASSERT_EQ(fs_txn_on_write(&m), FS_TXN_WRITE_FIRST);
	fs_txn_on_answer(&m, ERR_A);
	ASSERT_EQ(fs_txn_on_write(&m), FS_TXN_WRITE_FIRST);
	fs_txn_on_answer(&m, 0);
	ASSERT_EQ(fs_txn_on_flush(&m), 0);
}

/* A handle that wrote its request reads the answer from its first read's offset on: pread(0),
 * or the shell's read at the end of its request (exec 3<>f; printf … >&3; cat <&3). */
TEST(read_offsets_writable)
{
	struct fs_txn_sm m = at(FS_TXN_ANSWERED);
	size_t pos = 99;

	ASSERT_EQ(fs_txn_on_read(&m, true, 34, 400, &pos), 0);
	ASSERT_EQ(m.state, FS_TXN_READING);
	ASSERT_EQ(pos, 0);
	ASSERT_EQ(fs_txn_on_read(&m, true, 34 + 100, 400, &pos), 0);
	ASSERT_EQ(pos, 100);
	ASSERT_EQ(fs_txn_on_read(&m, true, 34 + 400, 400, &pos), 0);
	ASSERT_EQ(pos, 400); /* end of the answer: the caller replies 0 bytes */
	/* A pread before the base reads from the file offset (as a regular file would). */
	ASSERT_EQ(fs_txn_on_read(&m, true, 10, 400, &pos), 0);
	ASSERT_EQ(pos, 10);
	/* A write starts a new request; its first read sets the base again. */
	ASSERT_EQ(fs_txn_on_write(&m), FS_TXN_WRITE_FIRST);
	fs_txn_on_answer(&m, 0);
	ASSERT_EQ(fs_txn_on_read(&m, true, 0, 400, &pos), 0);
	ASSERT_EQ(pos, 0);
	ASSERT_EQ(m.read_base, 0);
}

/* A read-only handle reads like a regular file from offset 0; a first read at or past the end of
 * the answer (a seek from st_size) is ESPIPE and leaves the answer unread. */
TEST(read_offsets_read_only)
{
	struct fs_txn_sm m;
	size_t pos = 99;

	fs_txn_on_open(&m, true);
	ASSERT_EQ(fs_txn_on_read(&m, false, 400, 400, &pos), ESPIPE);
	ASSERT_EQ(fs_txn_on_read(&m, false, 4096, 400, &pos), ESPIPE);
	ASSERT_EQ(m.state, FS_TXN_ANSWERED);
	ASSERT_EQ(pos, 99);
	ASSERT_EQ(fs_txn_on_read(&m, false, 100, 400, &pos), 0);
	ASSERT_EQ(m.state, FS_TXN_READING);
	ASSERT_EQ(pos, 100);
	/* Once reading, the end of the answer is just the end. */
	ASSERT_EQ(fs_txn_on_read(&m, false, 400, 400, &pos), 0);
	ASSERT_EQ(pos, 400);

	/* An empty read of a read-only handle with no mailbox: the run, then from 0. */
	fs_txn_on_open(&m, false);
	ASSERT_TRUE(fs_txn_read_runs(&m));
	fs_txn_on_answer(&m, 0);
	ASSERT_EQ(fs_txn_on_read(&m, false, 0, 400, &pos), 0);
	ASSERT_EQ(pos, 0);
	/* An empty answer at offset 0 is no seek: served (0 bytes), not ESPIPE. */
	fs_txn_on_open(&m, true);
	ASSERT_EQ(fs_txn_on_read(&m, false, 0, 0, &pos), 0);
}

/* The shell pattern as kmsfs and nullfs see it: the writer's handle runs at flush (its answer
 * goes to a mailbox), the reader's handle opens with that answer. */
TEST(shell_pattern)
{
	struct fs_txn_sm w, r;
	size_t pos;

	fs_txn_on_open(&w, false);
	ASSERT_EQ(fs_txn_on_flush(&w), 0); /* bash's dup2/close before the write: nothing runs */
	ASSERT_FALSE(fs_txn_flush_runs(&w));
	ASSERT_EQ(fs_txn_on_write(&w), FS_TXN_WRITE_FIRST);
	ASSERT_TRUE(fs_txn_flush_runs(&w));
	fs_txn_on_answer(&w, 0);
	ASSERT_EQ(fs_txn_on_flush(&w), 0);
	ASSERT_FALSE(fs_txn_flush_runs(&w)); /* a second flush (dup) runs nothing again */

	fs_txn_on_open(&r, true);
	ASSERT_FALSE(fs_txn_read_runs(&r));
	ASSERT_EQ(fs_txn_on_read(&r, false, 0, 400, &pos), 0);
	ASSERT_EQ(pos, 0);
	ASSERT_EQ(fs_txn_on_read(&r, false, 400, 400, &pos), 0);
	ASSERT_EQ(pos, 400);
	ASSERT_FALSE(fs_txn_read_runs(&r)); /* re-reads at EOF run nothing */
}

/* Only write-only handles get a FLUSH at close: they learn their outcome there. Read-only and
 * read-write handles are opened with FOPEN_NOFLUSH. */
TEST(needs_flush)
{
	ASSERT_TRUE(fs_txn_needs_flush(false, true));
	ASSERT_FALSE(fs_txn_needs_flush(true, true));
	ASSERT_FALSE(fs_txn_needs_flush(true, false));
}

/* A read-write handle as a program uses it, with no FLUSH: a request read is done at close (the
 * release runs nothing); a request written after it and never read runs at the release, and its
 * error waits for no close (nobody is told: the answer goes to the mailbox). */
TEST(program_pattern_no_flush)
{
	struct fs_txn_sm m;
	size_t pos;

	fs_txn_on_open(&m, false);
	ASSERT_EQ(fs_txn_on_write(&m), FS_TXN_WRITE_FIRST);
	ASSERT_TRUE(fs_txn_read_runs(&m));
	fs_txn_on_answer(&m, ERR_A);
	ASSERT_EQ(fs_txn_on_read(&m, true, 2, 400, &pos), 0);
	ASSERT_FALSE(fs_txn_release_runs(&m)); /* read: nothing left for the release */

	ASSERT_EQ(fs_txn_on_write(&m), FS_TXN_WRITE_FIRST); /* the next request, never read */
	ASSERT_TRUE(fs_txn_release_runs(&m));
	fs_txn_on_answer(&m, ERR_A);
	ASSERT_FALSE(fs_txn_release_runs(&m));

	/* A refused write never read: the release answers the refusal. */
	fs_txn_on_open(&m, false);
	(void)fs_txn_on_write(&m);
	fs_txn_on_write_refused(&m, ERR_R);
	ASSERT_TRUE(fs_txn_release_runs(&m));
}

/* fsync is a flush a program asks for: it runs a written request and reports its error once;
 * the close after it (a write-only handle's flush) reports nothing more. */
TEST(fsync_reports_once)
{
	struct fs_txn_sm m;

	fs_txn_on_open(&m, false);
	(void)fs_txn_on_write(&m);
	ASSERT_TRUE(fs_txn_flush_runs(&m));
	fs_txn_on_answer(&m, ERR_A);
	ASSERT_EQ(fs_txn_on_flush(&m), ERR_A); /* the fsync */
	ASSERT_FALSE(fs_txn_flush_runs(&m));
	ASSERT_FALSE(fs_txn_release_runs(&m));
	ASSERT_EQ(fs_txn_on_flush(&m), 0); /* the close */
}
