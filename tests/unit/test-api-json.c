/* test-api-json.c - api_json_print (src/api/api_call.c), the printer of every answer, prints
 * byte for byte what cJSON_PrintUnformatted prints: objects, arrays, every scalar, strings with
 * every byte that needs an escape and bytes past 127, numbers of each kind cJSON prints apart. */
#include "kms_test.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"

/* j printed both ways must be the same text. */
static void same(const cJSON *j)
{
	struct kms_buf b = KMS_BUF_INIT(1 << 20, false);
	char *want = cJSON_PrintUnformatted(j);

	ASSERT_TRUE(want != NULL);
	ASSERT_OK(api_json_print(j, &b));
	ASSERT_STREQ((const char *)b.data, want);
	ASSERT_EQ(b.len, strlen(want));
	free(want);
	kms_buf_free(&b);
}

/* same(j), then j is deleted. */
static void same_once(cJSON *j)
{
	same(j);
	cJSON_Delete(j);
}

TEST(scalars)
{
	const double numbers[] = { 0,	-1,	 42,	2147483647.0,	     4294967296.0,
				   0.1, -1.5e-7, 1e300, 123456789.123456789, 1.0 / 3.0 };

	for (size_t i = 0; i < KMS_ARRAY_SIZE(numbers); i++)
		STEP(same_once(cJSON_CreateNumber(numbers[i])));
	STEP(same_once(cJSON_CreateNull()));
	STEP(same_once(cJSON_CreateTrue()));
	STEP(same_once(cJSON_CreateFalse()));
	STEP(same_once(cJSON_CreateRaw("{\"raw\":1}")));
}

TEST(strings_every_byte)
{
	char s[256];

	/* Every byte value once (1..255), then some runs around the escapes. */
	for (int i = 1; i < 256; i++)
		s[i - 1] = (char)i;
	s[255] = 0;
	STEP(same_once(cJSON_CreateString(s)));
	STEP(same_once(cJSON_CreateString("")));
	STEP(same_once(cJSON_CreateString("a\"b\\c\nd\x01\x1f\x7f\xc3\xa9 end")));
}

TEST(nested)
{
	cJSON *o = cJSON_CreateObject(), *a = cJSON_CreateArray(), *inner = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "key_id", "0d0466b0-e727-4d9c-b35d-f84bb474a37f");
	cJSON_AddStringToObject(o, "cipher_text", "00020000abcdef");
	cJSON_AddNumberToObject(o, "n", 7);
	cJSON_AddBoolToObject(o, "key_rotation_enabled", 0);
	cJSON_AddItemToArray(a, cJSON_CreateString("x\ty"));
	cJSON_AddItemToArray(a, cJSON_CreateNumber(2.5));
	cJSON_AddItemToArray(a, cJSON_CreateObject());
	cJSON_AddItemToArray(a, cJSON_CreateArray());
	cJSON_AddItemToObject(o, "list", a);
	cJSON_AddItemToObject(inner, "q\"uote", cJSON_CreateNull());
	cJSON_AddItemToObject(o, "inner", inner);
	STEP(same(o));
	cJSON_Delete(o);
	o = cJSON_CreateObject();
	STEP(same(o));
	cJSON_Delete(o);
}

/* Output past the buffer's bound fails whole (the caller truncates), never overruns. */
TEST(bounded)
{
	struct kms_buf b = KMS_BUF_INIT(8, false);
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "cipher_text", "0123456789");
	ASSERT_ERR(api_json_print(o, &b), KMS_E_TOO_LONG);
	ASSERT_LE(b.len, 8);
	kms_buf_free(&b);
	cJSON_Delete(o);
}

/* Escapes at every position of the 8-byte words the printer scans, in strings of every length
 * up to 40: the same text as cJSON's. */
TEST(strings_random)
{
	static const char alphabet[] = "ab09\"\\\n\x01\x1f \x7f\x80\xff~";
	unsigned seed = 12345;
	char s[41];

	for (int iter = 0; iter < 2000; iter++) {
		size_t n = (size_t)iter % 41;

		for (size_t i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			/* mostly plain bytes, an escape now and then */
			s[i] = (seed >> 16) % 5 ? 'x'
						: alphabet[(seed >> 8) % (sizeof(alphabet) - 1)];
		}
		s[n] = 0;
		STEP(same_once(cJSON_CreateString(s)));
	}
}
