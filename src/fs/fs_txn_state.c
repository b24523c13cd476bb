/* fs_txn_state.c - the transaction state of one open action handle; the table is in the header. */
#include "fs_txn_state.h"

#include <errno.h>

void fs_txn_on_open(struct fs_txn_sm *m, bool took_answer)
{
	m->state = took_answer ? FS_TXN_ANSWERED : FS_TXN_IDLE;
	m->refusal = 0;
	m->answer_err = 0;
	m->read_base = 0;
}

enum fs_txn_write fs_txn_on_write(struct fs_txn_sm *m)
{
	switch (m->state) {
	case FS_TXN_WRITING:
		return FS_TXN_WRITE_MORE;
	case FS_TXN_REFUSED:
		return FS_TXN_WRITE_REFUSED;
	case FS_TXN_IDLE:
	case FS_TXN_ANSWERED:
	case FS_TXN_READING:
		break;
	}
	m->state = FS_TXN_WRITING;
	m->answer_err = 0;
	return FS_TXN_WRITE_FIRST;
}

void fs_txn_on_write_refused(struct fs_txn_sm *m, int why)
{
	if (m->state != FS_TXN_WRITING)
		return;
	m->state = FS_TXN_REFUSED;
	m->refusal = why;
}

bool fs_txn_read_runs(const struct fs_txn_sm *m)
{
	return m->state != FS_TXN_ANSWERED && m->state != FS_TXN_READING;
}

bool fs_txn_needs_flush(bool readable, bool writable)
{
	return writable && !readable;
}

bool fs_txn_flush_runs(const struct fs_txn_sm *m)
{
	return m->state == FS_TXN_WRITING || m->state == FS_TXN_REFUSED;
}

bool fs_txn_release_runs(const struct fs_txn_sm *m)
{
	return fs_txn_flush_runs(m);
}

void fs_txn_on_answer(struct fs_txn_sm *m, int err)
{
	m->state = FS_TXN_ANSWERED;
	m->refusal = 0;
	m->answer_err = err;
}

int fs_txn_on_read(struct fs_txn_sm *m, bool writable, off_t off, size_t len, size_t *pos)
{
	if (m->state == FS_TXN_ANSWERED) {
		if (!writable && off > 0 && (size_t)off >= len)
			return ESPIPE;
		m->read_base = writable ? off : 0;
		m->state = FS_TXN_READING;
	}
	*pos = off >= m->read_base ? (size_t)(off - m->read_base) : (size_t)off;
	return 0;
}

int fs_txn_on_flush(struct fs_txn_sm *m)
{
	int err = 0;

	if (m->state == FS_TXN_ANSWERED || m->state == FS_TXN_READING) {
		err = m->answer_err;
		m->answer_err = 0;
	}
	return err;
}
