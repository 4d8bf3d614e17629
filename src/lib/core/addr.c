/* SPDX-License-Identifier: MIT */
/*
 * Endpoint address text form: "A.B.C.D:PORT" or "HOST:PORT".
 *
 * Strict on purpose, because these strings come from command lines and configuration: the port is 1 to 5
 * decimal digits with a value of at most 65535 (0 allowed: "any port" where binding), nothing else may
 * follow it, and a host made only of digits and dots must be a full dotted quad (inet_pton), since
 * getaddrinfo would otherwise accept inet_aton's legacy forms ("10.1" = 10.0.0.1, octal "010.0.0.1").
 *
 * Errors: -EINVAL malformed text; for names, -ENOENT the name does not resolve to an IPv4 address,
 * -EAGAIN temporary resolver failure, -ENOMEM out of memory.
 */
#include <viaduct/nic.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define HOST_MAX 253 /* longest DNS name in text form (RFC 1035 section 2.3.4, less the root dot) */

static int parse_port(const char *s, uint16_t *port_be)
{
	size_t n = strlen(s);
	uint32_t v = 0;

	if (n == 0 || n > 5)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (uint32_t)(s[i] - '0');
	}
	if (v > 65535)
		return -EINVAL;
	*port_be = htons((uint16_t)v);
	return 0;
}

static int looks_numeric(const char *host)
{
	return host[strspn(host, "0123456789.")] == '\0';
}

static int resolve(const char *host, uint32_t *ip_be)
{
	struct addrinfo hints, *res = NULL;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_INET;
	hints.ai_socktype = SOCK_DGRAM;
	int rc = getaddrinfo(host, NULL, &hints, &res);
	switch (rc) {
	case 0:
		break;
	case EAI_AGAIN:
		return -EAGAIN;
	case EAI_MEMORY:
		return -ENOMEM;
	case EAI_NONAME:
	case EAI_NODATA:
	case EAI_ADDRFAMILY:
	case EAI_FAIL:
		return -ENOENT;
	default:
		return -EINVAL;
	}
	int ret = -ENOENT;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		if (ai->ai_family == AF_INET && ai->ai_addrlen >= sizeof(struct sockaddr_in)) {
			const struct sockaddr_in *sin = (const struct sockaddr_in *)ai->ai_addr;
			*ip_be = sin->sin_addr.s_addr;
			ret = 0;
			break;
		}
	}
	freeaddrinfo(res);
	return ret;
}

VD_API int vd_addr_parse(const char *text, struct vd_addr *out)
{
	char host[HOST_MAX + 1];
	struct vd_addr a = { 0 };

	if (!text || !out)
		return -EINVAL;
	const char *colon = strrchr(text, ':');
	if (!colon)
		return -EINVAL;
	size_t hlen = (size_t)(colon - text);
	if (hlen == 0 || hlen > HOST_MAX)
		return -EINVAL;
	memcpy(host, text, hlen);
	host[hlen] = '\0';
	/* A second ':' would be an IPv6 literal or garbage; IPv4 only. */
	if (strchr(host, ':'))
		return -EINVAL;

	int rc = parse_port(colon + 1, &a.port);
	if (rc)
		return rc;

	struct in_addr in;
	if (inet_pton(AF_INET, host, &in) == 1) {
		a.ip = in.s_addr;
	} else if (looks_numeric(host)) {
		return -EINVAL;
	} else {
		/* A name: letters, digits, '-', '.' and '_' (the latter appears in /etc/hosts entries). */
		for (size_t i = 0; i < hlen; i++) {
			char c = host[i];
			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			      c == '-' || c == '.' || c == '_'))
				return -EINVAL;
		}
		rc = resolve(host, &a.ip);
		if (rc)
			return rc;
	}
	*out = a;
	return 0;
}

VD_API char *vd_addr_format(const struct vd_addr *a, char *buf, size_t len)
{
	if (!buf || len == 0)
		return buf;
	if (!a) {
		buf[0] = '\0';
		return buf;
	}
	const uint8_t *ip = (const uint8_t *)&a->ip; /* network order: first byte is the first number */
	snprintf(buf, len, "%u.%u.%u.%u:%u", ip[0], ip[1], ip[2], ip[3], (unsigned)ntohs(a->port));
	return buf;
}
