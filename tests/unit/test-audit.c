/* test-audit.c - the audit trail's MAC chain (src/audit): the documented canonical form checked
 * against OpenSSL's HMAC, two writers appending to one file, log rotation linking two files, and
 * verification naming the first line changed, removed or inserted. */
#include "kms_test.h"
#include "kms_test_tmp.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "audit/kms_audit.h"

static const uint8_t key[AUDIT_KEY_BYTES] = { 1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
					      12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
					      23, 24, 25, 26, 27, 28, 29, 30, 31 };

static struct audit_event event(const char *action, pid_t pid)
{
	return (struct audit_event){ .uid = 1000,
				     .gid = 1000,
				     .pid = pid,
				     .process = "app",
				     .mntns = 4026531841u,
				     .cgroup = "/system.slice/app.service",
				     .project = "p1",
				     .action = action,
				     .status = 200 };
}

static int open_rw(const char *path)
{
	return open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
}

/* Lines of a file (at most 64), each without its '\n'. */
struct lines {
	char *buf;
	char *line[64];
	size_t len[64], n;
};

static void lines_read(const char *path, struct lines *l)
{
	FILE *f = fopen(path, "r");
	size_t cap = 1 << 20, got;
	char *p;

	memset(l, 0, sizeof(*l));
	l->buf = calloc(1, cap);
	ASSERT_TRUE(f && l->buf);
	if (!f || !l->buf)
		return;
	got = fread(l->buf, 1, cap - 1, f);
	fclose(f);
	for (p = l->buf; p < l->buf + got && l->n < 64;) {
		char *nl = memchr(p, '\n', (size_t)(l->buf + got - p));

		l->line[l->n] = p;
		l->len[l->n] = nl ? (size_t)(nl - p) : (size_t)(l->buf + got - p);
		l->n++;
		p += l->len[l->n - 1] + 1;
	}
}

/* Verify files given as line arrays, in order: 0 intact, else 1 with v->bad_* set. */
static int verify(struct audit_verify *v, struct lines **files, size_t nfiles)
{
	int r = 0;

	audit_verify_init(v, key);
	for (size_t f = 0; f < nfiles && r == 0; f++) {
		if (audit_verify_file_begin(v) != 0)
			return -1;
		for (size_t i = 0; i < files[f]->n && r == 0; i++)
			r = audit_verify_line(v, files[f]->line[i], files[f]->len[i]);
		if (r == 0)
			r = audit_verify_file_end(v);
	}
	return r;
}

TEST(format_is_the_documented_canonical_form)
{
	struct audit_event e = event("create-key", 42);
	char line[AUDIT_LINE_MAX], hex[65];
	uint8_t mac[32];
	unsigned len = 0;
	const char *m;
	int n;

	e.process = "a\"b\n";
	e.object_id = "grant-1";
	n = audit_format(key, &e, NULL, NULL, "", line, sizeof(line));
	ASSERT_TRUE(n > 0);
	ASSERT_EQ(line[n - 1], '\n');
	ASSERT_TRUE(strstr(line, "\"process\":\"a\\\"b\\u000a\"") != NULL);
	ASSERT_TRUE(strstr(line, "\"mntns\":4026531841,\"cgroup\":\"/system.slice/app.service\"") !=
		    NULL);
	ASSERT_TRUE(strstr(line, "\"object_id\":\"grant-1\",\"prev\":\"\",\"mac\":\"") != NULL);
	/* mac = HMAC-SHA-256(key, the bytes before ,"mac":) in lower-case hex */
	m = strstr(line, ",\"mac\":\"");
	ASSERT_TRUE(m != NULL);
	if (!m)
		return;
	HMAC(EVP_sha256(), key, sizeof(key), (const uint8_t *)line, (size_t)(m - line), mac, &len);
	ASSERT_EQ(len, 32u);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", mac[i]);
	ASSERT_TRUE(strncmp(m + 8, hex, 64) == 0);
	ASSERT_STREQ(line + n - 3, "\"}\n");
	/* A line is never cut short: an event too big for one line is refused. */
	{
		char big[3000];

		memset(big, 'x', sizeof(big) - 1);
		big[sizeof(big) - 1] = 0;
		e.object_id = big;
		ASSERT_EQ(audit_format(key, &e, NULL, NULL, "", line, sizeof(line)), -1);
	}
}

/* A cgroup path longer than a line has room for (a caller can make its own path long) is cut,
 * marked, never in a UTF-8 sequence, and the line is written: the request is still served. */
TEST(long_cgroup_path_is_cut_and_marked)
{
	struct audit_event e = event("create-datakey", 42);
	char line[AUDIT_LINE_MAX], big[4000];
	const char *cg, *end;
	int n;

	big[0] = '/';
	for (size_t i = 1; i + 1 < sizeof(big); i++)
		big[i] = (i % 2) ? (char)0xc3 : (char)0xa9; /* "é" */
	big[sizeof(big) - 1] = 0;
	e.cgroup = big;
	n = audit_format(key, &e, NULL, NULL, "", line, sizeof(line));
	ASSERT_TRUE(n > 0);
	cg = strstr(line, "\"cgroup\":\"/");
	ASSERT_TRUE(cg != NULL);
	if (!cg)
		return;
	end = strstr(cg, "[...]\",\"project\"");
	ASSERT_TRUE(end != NULL);
	ASSERT_TRUE(end && (end - cg - 11) % 2 == 0); /* whole "é"s after the '/' */
	ASSERT_TRUE(end && (unsigned char)end[-1] == 0xa9);
	/* A short one is never marked. */
	e.cgroup = "/a/b";
	n = audit_format(key, &e, NULL, NULL, "", line, sizeof(line));
	ASSERT_TRUE(n > 0 && strstr(line, "\"cgroup\":\"/a/b\",") != NULL);
}

/* Two writers (a daemon and kmsctl) on one file: every line continues the one before it. */
TEST(two_writers_one_chain)
{
	char dir[4096], path[4200];
	struct audit_trail *daemon = NULL, *ctl = NULL;
	struct audit_event who = event(NULL, 1), e;
	struct lines l, *files[1] = { &l };
	struct audit_verify v;

	kms_test_mkdtemp(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/audit.log", dir);
	ASSERT_EQ(audit_open(open_rw(path), path, key, &who, true, &daemon), 0);
	who.process = "kmsctl";
	ASSERT_EQ(audit_open(open_rw(path), path, key, &who, false, &ctl), 0);
	for (int i = 0; i < 6; i++) {
		e = event(i % 2 ? "kmsctl token issue" : "encrypt-data", 100 + i);
		ASSERT_EQ(audit_reserve(i % 3 ? daemon : ctl), 0);
		ASSERT_EQ(audit_write(i % 3 ? daemon : ctl, &e, true), 0);
	}
	audit_unreserve(daemon);
	lines_read(path, &l);
	ASSERT_EQ(l.n, 7u); /* the daemon's audit-open line and six events */
	ASSERT_TRUE(strstr(l.line[0], "\"action\":\"audit-open\"") != NULL);
	ASSERT_EQ(verify(&v, files, 1), 0);
	ASSERT_EQ(v.total, 7u);
	audit_verify_free(&v);
	/* Another key (another state directory) verifies nothing. */
	{
		uint8_t other[AUDIT_KEY_BYTES] = { 9 };

		audit_verify_init(&v, other);
		ASSERT_EQ(audit_verify_file_begin(&v), 0);
		ASSERT_EQ(audit_verify_line(&v, l.line[0], l.len[0]), 1);
		ASSERT_EQ(v.bad_line, 1u);
		audit_verify_free(&v);
	}
	free(l.buf);
	audit_close(daemon);
	audit_close(ctl);
	kms_test_rmrf(dir);
}

/* kmsctl starting an empty file writes the audit-open line itself. */
TEST(first_writer_starts_the_file)
{
	char dir[4096], path[4200];
	struct audit_trail *ctl = NULL;
	struct audit_event who = event(NULL, 7), e = event("kmsctl init", 7);
	struct lines l, *files[1] = { &l };
	struct audit_verify v;

	kms_test_mkdtemp(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/audit.log", dir);
	ASSERT_EQ(audit_open(open_rw(path), path, key, &who, false, &ctl), 0);
	ASSERT_EQ(audit_write(ctl, &e, false), 0);
	lines_read(path, &l);
	ASSERT_EQ(l.n, 2u);
	ASSERT_TRUE(strstr(l.line[0], "\"prev_file\":\"\",\"prev_file_mac\":\"\",\"prev\":\"\"") !=
		    NULL);
	ASSERT_EQ(verify(&v, files, 1), 0);
	audit_verify_free(&v);
	free(l.buf);
	audit_close(ctl);
	kms_test_rmrf(dir);
}

/* A file with 8 lines, then each kind of tampering, reported at its line with its reason. */
TEST(verify_names_the_first_bad_line)
{
	char dir[4096], path[4200], edited[AUDIT_LINE_MAX];
	struct audit_trail *t = NULL;
	struct audit_event who = event(NULL, 1), e;
	struct lines l, m, *files[1] = { &m };
	struct audit_verify v;

	kms_test_mkdtemp(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/audit.log", dir);
	ASSERT_EQ(audit_open(open_rw(path), path, key, &who, true, &t), 0);
	for (int i = 0; i < 7; i++) {
		e = event("describe-key", 200 + i);
		ASSERT_EQ(audit_write(t, &e, false), 0);
	}
	audit_close(t);
	lines_read(path, &l);
	ASSERT_EQ(l.n, 8u);

	/* changed: line 4's status */
	m = l;
	memcpy(edited, l.line[3], l.len[3]);
	*strstr(edited, "\"status\":200") = 0;
	snprintf(edited + strlen(edited), sizeof(edited) - strlen(edited), "\"status\":201%s",
		 strstr(l.line[3], "\"status\":200") + 12);
	m.line[3] = edited;
	m.len[3] = strcspn(edited, "\n");
	ASSERT_EQ(verify(&v, files, 1), 1);
	ASSERT_EQ(v.bad_line, 4u);
	ASSERT_TRUE(strstr(v.why, "changed") != NULL);
	audit_verify_free(&v);

	/* removed: line 5 */
	m = l;
	memmove(&m.line[4], &m.line[5], 3 * sizeof(m.line[0]));
	memmove(&m.len[4], &m.len[5], 3 * sizeof(m.len[0]));
	m.n = 7;
	ASSERT_EQ(verify(&v, files, 1), 1);
	ASSERT_EQ(v.bad_line, 5u);
	ASSERT_TRUE(strstr(v.why, "removed") != NULL);
	audit_verify_free(&v);

	/* removed: the first line (the head of the file) */
	m = l;
	memmove(&m.line[0], &m.line[1], 7 * sizeof(m.line[0]));
	memmove(&m.len[0], &m.len[1], 7 * sizeof(m.len[0]));
	m.n = 7;
	ASSERT_EQ(verify(&v, files, 1), 1);
	ASSERT_EQ(v.bad_line, 1u);
	ASSERT_TRUE(strstr(v.why, "removed") != NULL);
	audit_verify_free(&v);

	/* inserted: a copy of line 2 after line 6 */
	m = l;
	memmove(&m.line[7], &m.line[6], 2 * sizeof(m.line[0]));
	memmove(&m.len[7], &m.len[6], 2 * sizeof(m.len[0]));
	m.line[6] = l.line[1];
	m.len[6] = l.len[1];
	m.n = 9;
	ASSERT_EQ(verify(&v, files, 1), 1);
	ASSERT_EQ(v.bad_line, 7u);
	ASSERT_TRUE(strstr(v.why, "inserted") != NULL);
	audit_verify_free(&v);

	/* not a line of the trail (a line without its mac, or a stray one) */
	m = l;
	m.len[2] -= 10;
	ASSERT_EQ(verify(&v, files, 1), 1);
	ASSERT_EQ(v.bad_line, 3u);
	audit_verify_free(&v);

	/* the last line removed: what a single file cannot show */
	m = l;
	m.n = 7;
	ASSERT_EQ(verify(&v, files, 1), 0);
	audit_verify_free(&v);
	free(l.buf);
	kms_test_rmrf(dir);
}

/* Log rotation: the new file's audit-open line names the old file's last mac, so verifying
 * both in order also shows lines cut off the end of the old one. */
TEST(rotation_links_the_files)
{
	char dir[4096], path[4200], moved[4300];
	struct audit_trail *t = NULL;
	struct audit_event who = event(NULL, 1), e = event("encrypt-data", 9);
	struct lines a, b, *files[2] = { &a, &b };
	struct audit_verify v;
	int fd;

	kms_test_mkdtemp(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/audit.log", dir);
	snprintf(moved, sizeof(moved), "%s.1", path);
	ASSERT_EQ(audit_open(open_rw(path), path, key, &who, true, &t), 0);
	ASSERT_EQ(audit_write(t, &e, false), 0);
	ASSERT_EQ(audit_write(t, &e, false), 0);
	ASSERT_EQ(rename(path, moved), 0);
	fd = open_rw(path);
	ASSERT_EQ(audit_reopen(t, fd), 0);
	ASSERT_EQ(audit_write(t, &e, false), 0);
	audit_close(t);
	lines_read(moved, &a);
	lines_read(path, &b);
	ASSERT_EQ(a.n, 3u);
	ASSERT_EQ(b.n, 2u);
	ASSERT_TRUE(strstr(b.line[0], "\"prev_file_mac\":\"") != NULL);
	ASSERT_EQ(verify(&v, files, 2), 0);
	ASSERT_TRUE(v.linked);
	audit_verify_free(&v);
	/* The old file's last line cut off: seen through the link. */
	a.n = 2;
	ASSERT_EQ(verify(&v, files, 2), 1);
	ASSERT_EQ(v.bad_file, 1u);
	ASSERT_EQ(v.bad_line, 3u);
	ASSERT_TRUE(strstr(v.why, "removed") != NULL);
	audit_verify_free(&v);
	/* Out of order: the first file was started by a writer that knew no file before it, so
	 * the link is not recorded (kmsctl says so) and cannot be checked. */
	a.n = 3;
	files[0] = &b;
	files[1] = &a;
	ASSERT_EQ(verify(&v, files, 2), 0);
	ASSERT_FALSE(v.linked);
	ASSERT_TRUE(v.link_unknown);
	audit_verify_free(&v);
	free(a.buf);
	free(b.buf);
	kms_test_rmrf(dir);
}
