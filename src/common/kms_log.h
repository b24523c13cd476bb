/* kms_log.h - logging, for the fs and tools layers only.
 *
 * core, store, auth and api never log (they return errors), so a secret three layers down can't
 * leak through a log call; .ci/check-source.sh enforces that. Messages never carry request or
 * response bodies, tokens or key material: quote names and codes only.
 *
 * Lines go to a stream (a log file, or stderr) as "TIME kmsfs LEVEL: message", or to syslog(3)
 * with their priority. On stderr that is systemd's journal (kms_log_detect_journal) they are
 * "<N>message" instead: the journal reads the priority N (sd-daemon(3)) and adds the time.
 */
#pragma once

#include <stdbool.h>
#include <stdio.h>

enum kms_log_level { KMS_LOG_ERROR, KMS_LOG_WARNING, KMS_LOG_INFO, KMS_LOG_DEBUG };

/* Log to this stream (NULL: stderr). The stream is owned by the caller. */
void kms_log_set_stream(FILE *f);
/* Log to f from now on (log rotation) and return the previous stream, which no log call uses
 * any more once this returns: the caller may close it. */
FILE *kms_log_swap_stream(FILE *f);
/* Log to syslog(3) from now on, as ident with facility LOG_DAEMON, each line with its priority
 * (LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG); the stream is no longer used. */
void kms_log_use_syslog(const char *ident);
/* Whether stderr is the journal's stream: JOURNAL_STREAM holds "DEV:INODE" of it when systemd
 * connects stderr to the journal (and stays set in children whose stderr is something else, so
 * the descriptor is compared). When it is, stderr lines get "<N>" priority prefixes from now on. */
bool kms_log_detect_journal(void);
/* "<N>" for a line of this level written to stderr by the caller, "" unless stderr is the
 * journal. */
const char *kms_log_stderr_prefix(enum kms_log_level level);
void kms_log_set_level(enum kms_log_level level);
void kms_log(enum kms_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define kms_log_error(...)   kms_log(KMS_LOG_ERROR, __VA_ARGS__)
#define kms_log_warning(...) kms_log(KMS_LOG_WARNING, __VA_ARGS__)
#define kms_log_info(...)    kms_log(KMS_LOG_INFO, __VA_ARGS__)
#define kms_log_debug(...)   kms_log(KMS_LOG_DEBUG, __VA_ARGS__)
