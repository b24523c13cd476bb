/* audit_verify.c - checking the audit trail's chain (kms_audit.h): every line's MAC, that each
 * line follows the one before it, and that each file continues the one given before it. The
 * first line that was changed, removed or inserted is named with its number and why. */
#define _GNU_SOURCE /* memmem */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/kms_hex.h"
#include "core/kms_core.h"
#include "kms_audit.h"

#define AUDIT_V_MAC  ",\"mac\":\""
#define AUDIT_V_PREV ",\"prev\":\""
#define AUDIT_V_OPEN ",\"action\":\"" AUDIT_ACTION_OPEN "\","
#define AUDIT_V_LINK ",\"prev_file_mac\":\""

void audit_verify_init(struct audit_verify *v, const uint8_t key[AUDIT_KEY_BYTES])
{
	memset(v, 0, sizeof(*v));
	v->key = key;
}

void audit_verify_free(struct audit_verify *v)
{
	free(v->macs);
	free(v->prev_macs);
	v->macs = v->prev_macs = NULL;
}

int audit_verify_file_begin(struct audit_verify *v)
{
	/* The file just checked becomes the previous one. */
	free(v->prev_macs);
	v->prev_macs = v->macs;
	v->n_prev = v->lines;
	v->macs = NULL;
	v->cap = 0;
	v->lines = 0;
	v->linked = v->link_unknown = false;
	v->files++;
	return 0;
}

__attribute__((format(printf, 4, 5))) static int
audit_verify_bad(struct audit_verify *v, unsigned file, size_t line, const char *fmt, ...)
{
	va_list ap;

	v->bad_file = file;
	v->bad_line = line;
	va_start(ap, fmt);
	vsnprintf(v->why, sizeof(v->why), fmt, ap);
	va_end(ap);
	return 1;
}

/* 64 lower-case hex digits at s into out. */
static bool audit_verify_hex(const char *s, uint8_t out[32])
{
	size_t n = 0;

	for (size_t i = 0; i < AUDIT_MAC_HEX; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return kms_hex_decode(s, AUDIT_MAC_HEX, out, 32, &n) == 0 && n == 32;
}

/* Index + 1 of mac among the first n of macs, 0 if absent. */
static size_t audit_verify_find(uint8_t (*macs)[32], size_t n, const uint8_t mac[32])
{
	for (size_t i = n; i > 0; i--)
		if (core_equal(macs[i - 1], mac, 32))
			return i;
	return 0;
}

/* Split a line into its MACed body (through prev's closing quote), prev and mac. */
static bool audit_verify_parse(const char *line, size_t len, size_t *body, bool *has_prev,
			       uint8_t prev[32], uint8_t mac[32])
{
	const size_t tail = sizeof(AUDIT_V_MAC) - 1 + AUDIT_MAC_HEX + 2;
	const size_t pf = sizeof(AUDIT_V_PREV) - 1;
	size_t b;

	if (len < tail + 2 || line[0] != '{' || !core_equal(line + len - 2, "\"}", 2))
		return false;
	b = len - tail;
	if (!core_equal(line + b, AUDIT_V_MAC, sizeof(AUDIT_V_MAC) - 1) ||
	    !audit_verify_hex(line + b + sizeof(AUDIT_V_MAC) - 1, mac))
		return false;
	*body = b;
	/* ,"prev":"" or ,"prev":"<64 hex>" just before */
	if (b >= pf + 1 && core_equal(line + b - pf - 1, AUDIT_V_PREV "\"", pf + 1)) {
		*has_prev = false;
		return true;
	}
	if (b < pf + AUDIT_MAC_HEX + 1 ||
	    !core_equal(line + b - pf - AUDIT_MAC_HEX - 1, AUDIT_V_PREV, pf) ||
	    line[b - 1] != '"' || !audit_verify_hex(line + b - AUDIT_MAC_HEX - 1, prev))
		return false;
	*has_prev = true;
	return true;
}

/* An audit-open line that names the previous file's last mac: does it name the last line of
 * the file given before this one? */
static int audit_verify_link(struct audit_verify *v, const char *line, size_t body)
{
	const char *open = memmem(line, body, AUDIT_V_OPEN, sizeof(AUDIT_V_OPEN) - 1);
	const char *link = memmem(line, body, AUDIT_V_LINK, sizeof(AUDIT_V_LINK) - 1);
	uint8_t mac[32];
	size_t j;

	if (!open || !link || v->files < 2)
		return 0;
	link += sizeof(AUDIT_V_LINK) - 1;
	if (*link == '"') {
		v->link_unknown = true;
		return 0;
	}
	if ((size_t)(line + body - link) < AUDIT_MAC_HEX || !audit_verify_hex(link, mac))
		return 0;
	if (v->n_prev && core_equal(v->prev_macs[v->n_prev - 1], mac, 32)) {
		v->linked = true;
		return 0;
	}
	j = audit_verify_find(v->prev_macs, v->n_prev, mac);
	if (j)
		return audit_verify_bad(v, 1, j + 1,
					"inserted: line %zu of the next file names line %zu as "
					"this file's last line (lines added at its end)",
					v->lines, j);
	return audit_verify_bad(v, 1, v->n_prev + 1,
				"removed: line %zu of the next file names a last line that is "
				"not in this file (lines cut off after line %zu, or files out "
				"of order)",
				v->lines, v->n_prev);
}

int audit_verify_line(struct audit_verify *v, const char *line, size_t len)
{
	uint8_t prev[32], mac[32], want[32];
	size_t body = 0, n, j;
	bool has_prev = false;

	n = ++v->lines;
	v->total++;
	if (!audit_verify_parse(line, len, &body, &has_prev, prev, mac))
		return audit_verify_bad(v, 0, n,
					"not a line of the chained trail (no prev and mac at its "
					"end: changed, torn, or written before the chain)");
	if (core_hmac_sha256(v->key, AUDIT_KEY_BYTES, line, body, want) < 0 ||
	    !core_equal(want, mac, 32))
		return audit_verify_bad(v, 0, n,
					"changed or inserted: its MAC does not match its content "
					"(or another state directory's audit key)");
	if (n > 1 && (j = audit_verify_find(v->macs, n - 1, mac)) != 0)
		return audit_verify_bad(v, 0, n, "inserted: a copy of line %zu", j);
	if (n == 1 && has_prev)
		return audit_verify_bad(
			v, 0, n,
			"removed: the line(s) before it are missing (it continues a "
			"line that is not in the file)");
	if (n > 1 && !has_prev)
		return audit_verify_bad(v, 0, n,
					"does not follow line %zu: it starts a new chain (line %zu "
					"was not a line its writer could read)",
					n - 1, n - 1);
	if (n > 1 && !core_equal(prev, v->macs[n - 2], 32)) {
		j = audit_verify_find(v->macs, n - 2, prev);
		if (j)
			return audit_verify_bad(v, 0, j + 1,
						"inserted: line %zu continues line %zu directly", n,
						j);
		return audit_verify_bad(v, 0, n,
					"removed: the line before it is missing (it does not "
					"continue line %zu)",
					n - 1);
	}
	if (n > v->cap) {
		size_t cap = v->cap ? 2 * v->cap : 1024;
		uint8_t(*m)[32] = realloc(v->macs, cap * 32);

		if (!m)
			return -1;
		v->macs = m;
		v->cap = cap;
	}
	memcpy(v->macs[n - 1], mac, 32);
	return audit_verify_link(v, line, body);
}

int audit_verify_file_end(struct audit_verify *v)
{
	if (v->files < 2 || v->linked || v->link_unknown)
		return 0;
	return audit_verify_bad(v, 0, 1,
				"does not continue the file given before it: none of its "
				"audit-open lines names that file's last line (%zu) (lines cut off "
				"from its end, or files out of order)",
				v->n_prev);
}
