/* kms_time.h - the clocks of kmsfs, in milliseconds (and one in nanoseconds). */
#pragma once

#include <stdint.h>

/* Wall-clock time, unix milliseconds: for what is stored or compared with stored times (key
 * creation, deletion dates, token expiry). */
int64_t kms_time_real_ms(void);
/* Monotonic milliseconds: for intervals that must not jump with the wall clock (mailbox
 * lifetimes, rate limits). */
int64_t kms_time_mono_ms(void);
/* Monotonic nanoseconds: for durations too short for milliseconds (request latencies). */
int64_t kms_time_mono_ns(void);
