/* fuzz.h - what every fuzz target and fuzz-main.c share.
 *
 * A target is one file defining LLVMFuzzerTestOneInput(). It returns 0, and calls abort() when a
 * property it checks is violated, so libFuzzer reports a crash and the corpus replay fails.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* fuzz-blob opens what parses with this key and context; gen-seeds.c seals its seeds with them,
 * so seed blobs reach the code behind the GCM tag check. */
#define FUZZ_BLOB_KEY                                                                              \
	{                                                                                          \
		0x6b, 0x6d, 0x73, 0x66, 0x73, 0x2d, 0x66, 0x75, 0x7a, 0x7a, 0x2d, 0x6b, 0x65,      \
			0x79, 0x2d, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39,    \
			0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x21,                                  \
	}
#define FUZZ_BLOB_CONTEXT "{\"fuzz\":\"blob\"}"
#define FUZZ_BLOB_KEY_ID  "5e0f3a2b-7c4d-4e1f-9a8b-0c1d2e3f4a5b"
