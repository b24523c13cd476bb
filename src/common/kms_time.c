/* kms_time.c - the clocks of kmsfs. */
#include "kms_time.h"

#include <time.h>

static int64_t kms_time_ms(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t kms_time_real_ms(void)
{
	return kms_time_ms(CLOCK_REALTIME);
}

int64_t kms_time_mono_ms(void)
{
	return kms_time_ms(CLOCK_MONOTONIC);
}

int64_t kms_time_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
