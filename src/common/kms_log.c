#define _GNU_SOURCE /* secure_getenv */
#include "kms_log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static FILE *kms_log_stream;
static enum kms_log_level kms_log_threshold = KMS_LOG_INFO;
static bool kms_log_to_syslog, kms_log_journal;
static pthread_mutex_t kms_log_lock = PTHREAD_MUTEX_INITIALIZER;

void kms_log_set_stream(FILE *f)
{
	kms_log_stream = f;
}

FILE *kms_log_swap_stream(FILE *f)
{
	FILE *old;

	pthread_mutex_lock(&kms_log_lock);
	old = kms_log_stream;
	kms_log_stream = f;
	pthread_mutex_unlock(&kms_log_lock);
	return old;
}

void kms_log_use_syslog(const char *ident)
{
	/* LOG_NDELAY: connect now, while the start-up can still say that it failed. */
	openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	pthread_mutex_lock(&kms_log_lock);
	kms_log_to_syslog = true;
	pthread_mutex_unlock(&kms_log_lock);
}

bool kms_log_detect_journal(void)
{
	const char *js = secure_getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	char extra;

	kms_log_journal = js && sscanf(js, "%llu:%llu%c", &dev, &ino, &extra) == 2 &&
			  fstat(STDERR_FILENO, &st) == 0 && (unsigned long long)st.st_dev == dev &&
			  (unsigned long long)st.st_ino == ino;
	return kms_log_journal;
}

const char *kms_log_stderr_prefix(enum kms_log_level level)
{
	static const char *const prefix[] = { "<3>", "<4>", "<6>", "<7>" }; /* sd-daemon(3) */

	return kms_log_journal ? prefix[level] : "";
}

void kms_log_set_level(enum kms_log_level level)
{
	kms_log_threshold = level;
}

void kms_log(enum kms_log_level level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	static const int priority[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	FILE *out;
	struct timespec ts;
	struct tm tm;
	char stamp[32];
	va_list ap;

	if (level > kms_log_threshold || !fmt)
		return;
	va_start(ap, fmt);
	pthread_mutex_lock(&kms_log_lock);
	out = kms_log_stream ? kms_log_stream : stderr;
	if (kms_log_to_syslog) {
		vsyslog(priority[level], fmt, ap);
	} else {
		if (out == stderr && kms_log_journal) {
			fputs(kms_log_stderr_prefix(level), out); /* the journal adds the time */
		} else {
			clock_gettime(CLOCK_REALTIME, &ts);
			gmtime_r(&ts.tv_sec, &tm);
			strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
			fprintf(out, "%s kmsfs %s: ", stamp, names[level]);
		}
		vfprintf(out, fmt, ap);
		fputc('\n', out);
		fflush(out);
	}
	pthread_mutex_unlock(&kms_log_lock);
	va_end(ap);
}
