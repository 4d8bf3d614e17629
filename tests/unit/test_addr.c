/* SPDX-License-Identifier: MIT */
/* vd_addr_parse / vd_addr_format: the accepted forms, every rejected form, and the text round trip. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>

#include <viaduct/nic.h>

static int parse(const char *s, struct vd_addr *a)
{
	memset(a, 0xa5, sizeof(*a));
	return vd_addr_parse(s, a);
}

TEST(dotted_quad)
{
	struct vd_addr a;
	REQUIRE(parse("10.1.2.3:80", &a) == 0);
	CHECK_EQ(a.ip, inet_addr("10.1.2.3"));
	CHECK_EQ(a.port, htons(80));
	CHECK_EQ(a._pad, 0);
	REQUIRE(parse("0.0.0.0:0", &a) == 0);
	CHECK_EQ(a.ip, 0);
	CHECK_EQ(a.port, 0);
	REQUIRE(parse("255.255.255.255:65535", &a) == 0);
	CHECK_EQ(a.ip, 0xffffffffu);
	CHECK_EQ(a.port, 0xffff);
	REQUIRE(parse("1.2.3.4:00080", &a) == 0); /* five digits, leading zeros: still 80 */
	CHECK_EQ(a.port, htons(80));
}

TEST(host_name)
{
	struct vd_addr a;
	/* /etc/hosts has localhost on every Debian machine; no DNS is needed. */
	REQUIRE(parse("localhost:9000", &a) == 0);
	CHECK_EQ(a.ip, inet_addr("127.0.0.1"));
	CHECK_EQ(a.port, htons(9000));
}

TEST(bad_inputs_rejected)
{
	static const char *const bad[] = {
		"", ":", ":80", "1.2.3.4", "1.2.3.4:", "1.2.3.4:65536", "1.2.3.4:99999", "1.2.3.4:123456",
		"1.2.3.4:-1", "1.2.3.4:+1", "1.2.3.4: 1", "1.2.3.4:1 ", "1.2.3.4:1a", "1.2.3.4:0x10",
		"1.2.3:80", "1.2.3.4.5:80", "256.1.1.1:80", "10.1:80", "010.0.0.1:80", "1..2.3:80",
		" 1.2.3.4:80", "::1:80", "[::1]:80", "a b:80", "host/x:80", "1.2.3.4:80:80",
	};
	struct vd_addr a;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = parse(bad[i], &a);
		if (rc != -EINVAL)
			fprintf(stderr, "  accepted or wrong error for \"%s\": %d\n", bad[i], rc);
		CHECK_EQ(rc, -EINVAL);
	}
	CHECK_EQ(vd_addr_parse(NULL, &a), -EINVAL);
	CHECK_EQ(vd_addr_parse("1.2.3.4:5", NULL), -EINVAL);
	char longname[400];
	memset(longname, 'a', sizeof(longname));
	strcpy(longname + 300, ":80");
	CHECK_EQ(vd_addr_parse(longname, &a), -EINVAL);
}

TEST(failed_parse_leaves_output_alone)
{
	struct vd_addr a = { .ip = 7, .port = 9 };
	CHECK_EQ(vd_addr_parse("1.2.3.4:65536", &a), -EINVAL);
	CHECK_EQ(a.ip, 7);
	CHECK_EQ(a.port, 9);
}

TEST(format_round_trip)
{
	static const char *const good[] = { "10.99.0.1:4000", "0.0.0.0:0", "255.255.255.255:65535",
					    "1.2.3.4:1" };
	char buf[VD_ADDR_STRLEN];
	struct vd_addr a;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		REQUIRE(vd_addr_parse(good[i], &a) == 0);
		CHECK(vd_addr_format(&a, buf, sizeof(buf)) == buf);
		CHECK(strcmp(buf, good[i]) == 0);
	}
	/* The longest form fits VD_ADDR_STRLEN exactly with its NUL. */
	REQUIRE(vd_addr_parse("255.255.255.255:65535", &a) == 0);
	vd_addr_format(&a, buf, sizeof(buf));
	CHECK_EQ(strlen(buf), VD_ADDR_STRLEN - 1);
	/* A short buffer truncates and stays NUL-terminated. */
	char small[6];
	vd_addr_format(&a, small, sizeof(small));
	CHECK(strcmp(small, "255.2") == 0);
}

TEST_MAIN(T(dotted_quad), T(host_name), T(bad_inputs_rejected), T(failed_parse_leaves_output_alone),
	  T(format_round_trip))
