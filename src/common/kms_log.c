#include "kms_log.h"

#include <pthread.h>
#include <stdarg.h>
#include <time.h>

static FILE *kms_log_stream;
static enum kms_log_level kms_log_threshold = KMS_LOG_INFO;
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

void kms_log_set_level(enum kms_log_level level)
{
	kms_log_threshold = level;
}

void kms_log(enum kms_log_level level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	FILE *out;
	struct timespec ts;
	struct tm tm;
	char stamp[32];
	va_list ap;

	if (level > kms_log_threshold || !fmt)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
	pthread_mutex_lock(&kms_log_lock);
	out = kms_log_stream ? kms_log_stream : stderr;
	fprintf(out, "%s kmsfs %s: ", stamp, names[level]);
	va_start(ap, fmt);
	vfprintf(out, fmt, ap);
	va_end(ap);
	fputc('\n', out);
	fflush(out);
	pthread_mutex_unlock(&kms_log_lock);
}
