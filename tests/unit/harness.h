/* SPDX-License-Identifier: MIT */
/*
 * A minimal test harness: one process per test file, TEST() functions registered by a table in main,
 * CHECK() records a failure and continues, REQUIRE() stops the current test. The run ends with the plain
 * line "N passed, N failed" and exits non-zero on any failure.
 */
#ifndef VD_TEST_HARNESS_H
#define VD_TEST_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int vd_t_failed_checks;

#define CHECK(cond)                                                                              \
	do {                                                                                     \
		if (!(cond)) {                                                                   \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
			vd_t_failed_checks++;                                                    \
		}                                                                                \
	} while (0)

#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond); \
			vd_t_failed_checks++;                                                      \
			return;                                                                    \
		}                                                                                  \
	} while (0)

#define CHECK_EQ(a, b)                                                                          \
	do {                                                                                    \
		long long va_ = (long long)(a), vb_ = (long long)(b);                           \
		if (va_ != vb_) {                                                               \
			fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %lld, %s == %lld\n",     \
				__FILE__, __LINE__, #a, va_, #b, vb_);                          \
			vd_t_failed_checks++;                                                   \
		}                                                                               \
	} while (0)

struct vd_test {
	const char *name;
	void (*fn)(void);
};

#define TEST(name) static void name(void)
#define T(name) { #name, name }

static inline int vd_test_run(const struct vd_test *tests, size_t n)
{
	int passed = 0, failed = 0;
	for (size_t i = 0; i < n; i++) {
		int before = vd_t_failed_checks;
		tests[i].fn();
		if (vd_t_failed_checks == before) {
			passed++;
			printf("ok   %s\n", tests[i].name);
		} else {
			failed++;
			printf("FAIL %s\n", tests[i].name);
		}
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}

#define TEST_MAIN(...)                                                        \
	int main(void)                                                        \
	{                                                                     \
		static const struct vd_test tests_[] = { __VA_ARGS__ };        \
		return vd_test_run(tests_, sizeof(tests_) / sizeof(tests_[0])); \
	}

#endif
