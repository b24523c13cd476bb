/* test-metrics-format.c - the formatting of /kms/.metrics and /kms/.status (src/fs/fs_metrics.c)
 * from a snapshot made by hand: every family has HELP and TYPE before its samples, the labels
 * and values are where a scraper looks, the histogram is cumulative, a hostile version string
 * cannot break a label or the JSON, and the JSON parses and says the same. */
#include "kms_test.h"

#include <cjson/cJSON.h>
#include <string.h>

#include "fs/fs_internal.h"

static struct fs_metrics_row rows[] = {
	{ "create-key", "ok", 3 },	   { "create-key", "KMS.1105", 1 },
	{ "describe-key", "ok", 0 },	   { "describe-key", "KMS.0205", 2 },
	{ "describe-key", "KMS.0207", 5 },
};

static struct fs_metrics_snapshot snap(void)
{
	struct fs_metrics_snapshot s = {
		.version = "1.2.3",
		.start_time_s = 1700000000,
		.uptime_s = 12.5,
		.rows = rows,
		.nrows = KMS_ARRAY_SIZE(rows),
		.latency_sum_s = 0.25,
		.request_bytes = 100,
		.response_bytes = 2000,
		.cache_entries = 4,
		.cache_limit = 100,
		.cache_hits = 9,
		.cache_misses = 4,
		.cache_evictions = 6,
		.store_online = true,
		.store_fresh_age_ms = 1500,
	};

	for (size_t b = 0; b <= FS_LATENCY_BUCKETS; b++)
		s.latency[b] = b < 3 ? b : 11; /* cumulative: 0 1 2 11 ... 11 */
	s.pool_used[FS_POOL_HANDLES] = 7;
	s.pool_limit[FS_POOL_HANDLES] = 100000;
	s.pool_used[FS_POOL_MAILBOXES] = 2;
	return s;
}

static const char *text_of(const struct fs_metrics_snapshot *s, struct kms_buf *b)
{
	kms_buf_init(b, 1 << 20, false);
	return fs_metrics_format_text(s, b) == 0 ? (const char *)b->data : "";
}

/* Lines a scraper must find (a leading newline: a whole line). */
static const char *const text_lines[] = {
	"kmsfs_build_info{version=\"1.2.3\"} 1\n",
	"kmsfs_requests_total{action=\"create-key\",code=\"ok\"} 3\n",
	"kmsfs_requests_total{action=\"describe-key\",code=\"KMS.0207\"} 5\n",
	"kmsfs_requests_total{action=\"describe-key\",code=\"ok\"} 0\n",
	"kmsfs_request_duration_seconds_bucket{le=\"0.0001\"} 0\n",
	"kmsfs_request_duration_seconds_bucket{le=\"0.00025\"} 1\n",
	"kmsfs_request_duration_seconds_bucket{le=\"2.5\"} 11\n",
	"kmsfs_request_duration_seconds_bucket{le=\"+Inf\"} 11\n",
	"kmsfs_request_duration_seconds_count 11\n",
	"kmsfs_request_duration_seconds_sum 0.250000000\n",
	"\nkmsfs_open_handles 7\n",
	"\nkmsfs_open_handles_limit 100000\n",
	"\nkmsfs_mailboxes 2\n",
	"\nkmsfs_key_cache_hits_total 9\n",
	"\nkmsfs_store_reconnects_total 0\n",
	"\nkmsfs_key_cache_limit 100\n",
	"\nkmsfs_key_cache_evictions_total 6\n",
	"\nkmsfs_store_online 1\n",
	"\nkmsfs_store_fresh_age_seconds 1.500\n",
	"\nkmsfs_uptime_seconds 12.500\n",
};

TEST(text_samples)
{
	struct fs_metrics_snapshot s = snap();
	struct kms_buf b;
	const char *t = text_of(&s, &b);

	for (size_t i = 0; i < KMS_ARRAY_SIZE(text_lines); i++)
		ASSERT_TRUE(strstr(t, text_lines[i]) != NULL);
	kms_buf_free(&b);
}

/* Every line is a comment (HELP, then TYPE of the same name) or a sample of the family declared
 * last (a histogram's _bucket, _sum and _count too). */
TEST(text_every_family_declared)
{
	struct fs_metrics_snapshot s = snap();
	struct kms_buf b;
	char family[128] = "", help[128] = "";
	const char *t = text_of(&s, &b), *nl;
	size_t samples = 0;

	for (; *t; t = nl + 1) {
		char line[512], name[128];

		nl = strchr(t, '\n');
		ASSERT_TRUE(nl != NULL);
		if (!nl)
			break;
		ASSERT_TRUE((size_t)(nl - t) < sizeof(line));
		memcpy(line, t, (size_t)(nl - t));
		line[nl - t] = 0;
		if (sscanf(line, "# HELP %127s", help) == 1)
			continue;
		if (sscanf(line, "# TYPE %127s", family) == 1) {
			ASSERT_STREQ(family, help);
			ASSERT_TRUE(strncmp(family, "kmsfs_", 6) == 0);
			continue;
		}
		ASSERT_TRUE(sscanf(line, "%127[^{ ]", name) == 1);
		ASSERT_TRUE(strncmp(name, family, strlen(family)) == 0);
		ASSERT_TRUE(strchr(line, ' ') != NULL);
		samples++;
	}
	ASSERT_TRUE(samples > 30);
	kms_buf_free(&b);
}

TEST(hostile_version)
{
	struct fs_metrics_snapshot s = snap();
	struct kms_buf b;
	cJSON *j;

	s.version = "1\"} 2\n\\x";
	ASSERT_TRUE(strstr(text_of(&s, &b), "kmsfs_build_info{version=\"1_}_2__x\"} 1\n"));
	kms_buf_free(&b);
	kms_buf_init(&b, 1 << 20, false);
	ASSERT_EQ(fs_metrics_format_json(&s, &b), 0);
	j = cJSON_Parse((const char *)b.data);
	ASSERT_TRUE(j != NULL);
	ASSERT_STREQ(cJSON_GetStringValue(cJSON_GetObjectItem(j, "version")), "1_}_2__x");
	cJSON_Delete(j);
	kms_buf_free(&b);
}

static double num(const cJSON *o, const char *a, const char *b)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, a);

	if (b)
		x = cJSON_GetObjectItemCaseSensitive(x, b);
	return cJSON_GetNumberValue(x);
}

TEST(json_says_the_same)
{
	struct fs_metrics_snapshot s = snap();
	struct kms_buf b = KMS_BUF_INIT(1 << 20, false);
	const cJSON *by;
	cJSON *j;

	ASSERT_EQ(fs_metrics_format_json(&s, &b), 0);
	j = cJSON_Parse((const char *)b.data);
	ASSERT_TRUE(j != NULL);
	ASSERT_TRUE(cJSON_IsTrue(cJSON_GetObjectItem(j, "serving")));
	ASSERT_TRUE(num(j, "requests", "total") == 11);
	ASSERT_TRUE(num(j, "requests", "errors") == 8);
	by = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "requests"), "by_action");
	ASSERT_TRUE(num(by, "create-key", "ok") == 3);
	ASSERT_TRUE(num(by, "create-key", "KMS.1105") == 1);
	ASSERT_TRUE(num(by, "describe-key", "KMS.0207") == 5);
	ASSERT_EQ(cJSON_GetArraySize(by), 2);
	ASSERT_TRUE(num(j, "request_duration_seconds", "count") == 11);
	ASSERT_TRUE(num(cJSON_GetObjectItem(j, "request_duration_seconds"), "buckets", "+Inf") ==
		    11);
	ASSERT_TRUE(num(j, "open_handles", NULL) == 7);
	ASSERT_TRUE(num(j, "limits", "open_handles") == 100000);
	ASSERT_TRUE(num(j, "key_cache", "misses") == 4);
	ASSERT_TRUE(num(j, "store", "errors") == 0);
	ASSERT_TRUE(num(j, "key_cache", "limit") == 100);
	ASSERT_TRUE(num(j, "key_cache", "evictions") == 6);
	ASSERT_TRUE(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "store"), "online")));
	ASSERT_TRUE(num(j, "store", "fresh_age_ms") == 1500);
	ASSERT_TRUE(num(j, "start_time_seconds", NULL) == 1700000000);
	cJSON_Delete(j);
	kms_buf_free(&b);
}
