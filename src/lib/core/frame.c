/* SPDX-License-Identifier: MIT */
/*
 * Ethernet II / IPv4 / UDP framing (see frame.h): the parser for frames that arrive from the wire, which
 * are untrusted bytes, and the header builder for frames we send.
 *
 * Parser rules: every field is read only after the bytes holding it are known to be inside the frame, and
 * all multi-byte reads go through memcpy or byte loads, because a frame may sit at any address (an odd IHL
 * or a steering-ring record moves the UDP header off its natural alignment).
 *
 * Checksums are the Internet checksum of RFC 1071: the one's-complement sum of 16-bit words, complemented.
 * Its byte-order independence (RFC 1071 section 2.B) lets us add words as they load natively from memory
 * and store the folded result natively: on a little-endian CPU both the words and the result are
 * byte-swapped, which cancels out. Header fields given as numbers therefore go into a sum in their
 * network-order memory representation (htons), never as plain host values.
 */
#include "frame.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#define ETHERTYPE_IPV4 0x0800
#define IPPROTO_UDP_NUM 17
#define IPV4_FLAG_DF 0x4000
#define IPV4_FLAG_MF 0x2000
#define IPV4_FRAG_OFFSET_MASK 0x1fff
#define IPV4_TTL 64
#define IPV4_MAX_TOTAL_LEN 0xffff

static inline uint16_t rd_be16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static inline void wr_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* A 16-bit field exactly as it lies in memory (for checksum arithmetic, see the top of the file). */
static inline uint16_t rd_raw16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

uint32_t vd__csum_partial(const void *data, size_t len, uint32_t sum)
{
	/*
	 * Sums 32-bit words into 64-bit accumulators: 2^32 = 1 (mod 2^16 - 1), so a 32-bit word counts as
	 * the one's-complement sum of its two 16-bit halves, and deferring every carry to the final fold is
	 * the "deferred carries" technique of RFC 1071 section 2.C. A 64-bit accumulator cannot overflow
	 * before 2^32 words (16 GiB). Four independent accumulators let the adds of a 1500-byte frame run in
	 * parallel instead of forming one dependency chain.
	 */
	const uint8_t *p = data;
	uint64_t a0 = sum, a1 = 0, a2 = 0, a3 = 0;

	while (len >= 16) {
		uint32_t w[4];
		memcpy(w, p, sizeof(w));
		a0 += w[0];
		a1 += w[1];
		a2 += w[2];
		a3 += w[3];
		p += 16;
		len -= 16;
	}
	a0 += a1 + a2 + a3;
	while (len >= 4) {
		uint32_t w;
		memcpy(&w, p, sizeof(w));
		a0 += w;
		p += 4;
		len -= 4;
	}
	if (len >= 2) {
		a0 += rd_raw16(p);
		p += 2;
		len -= 2;
	}
	if (len) {
		/* An odd final byte is padded with a zero byte after it (RFC 1071 section 1). */
		const uint8_t last[2] = { p[0], 0 };
		a0 += rd_raw16(last);
	}
	/* Fold 64 -> 32 bits with end-around carry; twice, since the first fold may carry once more. */
	a0 = (a0 & 0xffffffffu) + (a0 >> 32);
	a0 = (a0 & 0xffffffffu) + (a0 >> 32);
	return (uint32_t)a0;
}

uint16_t vd__csum_fold(uint32_t sum)
{
	sum = (sum & 0xffffu) + (sum >> 16);
	sum = (sum & 0xffffu) + (sum >> 16);
	return (uint16_t)~sum;
}

/*
 * The UDP pseudo-header of RFC 768: source and destination address, a zero byte, the protocol number and
 * the UDP length. Addresses are taken as they lie in memory (network order), likewise the length.
 */
static uint32_t udp_pseudo_sum(uint32_t src_be, uint32_t dst_be, uint16_t udp_len_be)
{
	uint64_t s = (uint64_t)src_be + dst_be + htons(IPPROTO_UDP_NUM) + udp_len_be;
	s = (s & 0xffffffffu) + (s >> 32);
	return (uint32_t)s;
}

int vd__frame_parse_udp(const void *frame, size_t len, struct vd__udp_view *out)
{
	const uint8_t *f = frame;

	/* The smallest acceptable frame: Ethernet header, option-less IPv4 header, UDP header. */
	if (len < VD_FRAME_HDR_LEN)
		return -EBADMSG;
	/* Ethernet II: destination, source, EtherType. A VLAN tag (0x8100) is not accepted. */
	if (rd_be16(f + 12) != ETHERTYPE_IPV4)
		return -EBADMSG;

	const uint8_t *ip = f + VD_ETH_HLEN;
	size_t l3_len = len - VD_ETH_HLEN; /* >= 28 from the first check */

	/* RFC 791 section 3.1: version 4; IHL counts 32-bit words and is at least 5. */
	if ((ip[0] >> 4) != 4)
		return -EBADMSG;
	size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
	if (ihl < VD_IPV4_HLEN || ihl + VD_UDP_HLEN > l3_len)
		return -EBADMSG;
	/*
	 * Total length covers header and data. It may be shorter than what follows the Ethernet header,
	 * because Ethernet pads frames to its 60-byte minimum, but never longer.
	 */
	size_t tot_len = rd_be16(ip + 2);
	if (tot_len < ihl + VD_UDP_HLEN || tot_len > l3_len)
		return -EBADMSG;
	/* A fragment (MF set or a non-zero offset) is not a whole datagram; we never reassemble. */
	if (rd_be16(ip + 6) & (IPV4_FLAG_MF | IPV4_FRAG_OFFSET_MASK))
		return -EBADMSG;
	if (ip[9] != IPPROTO_UDP_NUM)
		return -EBADMSG;
	/* RFC 791: the header checksum, summed over the header with itself included, verifies to zero. */
	if (vd__csum_fold(vd__csum_partial(ip, ihl, 0)) != 0)
		return -EBADMSG;

	const uint8_t *udp = ip + ihl;
	size_t udp_len = rd_be16(udp + 4);
	/*
	 * RFC 768: the UDP length counts header and data. We require it to fill the IP payload exactly; a
	 * shorter one would leave bytes that belong to nobody, and no conforming sender produces that.
	 */
	if (udp_len != tot_len - ihl)
		return -EBADMSG;

	uint16_t csum = rd_raw16(udp + 6);
	if (csum != 0) { /* RFC 768: an all-zero checksum field means the sender computed none */
		uint32_t src_be, dst_be;
		memcpy(&src_be, ip + 12, 4);
		memcpy(&dst_be, ip + 16, 4);
		uint32_t pseudo = udp_pseudo_sum(src_be, dst_be, rd_raw16(udp + 4));
		/*
		 * A Linux sender with TX checksum offload leaves only the folded pseudo-header sum in the
		 * field (CHECKSUM_PARTIAL) and expects the NIC to finish; across a veth nothing ever does.
		 * Checked first because it is a single compare; otherwise the full sum over pseudo-header,
		 * UDP header and data must verify to zero.
		 */
		uint16_t partial = (uint16_t)~vd__csum_fold(pseudo);
		if (csum != partial &&
		    vd__csum_fold(vd__csum_partial(udp, udp_len, pseudo)) != 0)
			return -EBADMSG;
	}

	out->payload = udp + VD_UDP_HLEN;
	out->payload_len = (uint32_t)(udp_len - VD_UDP_HLEN);
	memcpy(&out->src_ip_be, ip + 12, 4);
	memcpy(&out->dst_ip_be, ip + 16, 4);
	memcpy(&out->src_port_be, udp, 2);
	memcpy(&out->dst_port_be, udp + 2, 2);
	out->dst_mac = f;
	out->src_mac = f + 6;
	return 0;
}

/*
 * Returns 0 without writing anything when payload_len does not fit an IPv4 datagram (a caller bug: the
 * nic layer never lets a payload exceed the MTU).
 */
size_t vd__frame_build_udp(void *frame, const struct vd__udp_tmpl *t, size_t payload_len, enum vd__udp_csum csum)
{
	if (payload_len > IPV4_MAX_TOTAL_LEN - VD_IPV4_HLEN - VD_UDP_HLEN)
		return 0;

	uint8_t *f = frame;
	uint8_t *ip = f + VD_ETH_HLEN;
	uint8_t *udp = ip + VD_IPV4_HLEN;
	uint16_t udp_len = (uint16_t)(VD_UDP_HLEN + payload_len);

	memcpy(f, t->dst_mac, 6);
	memcpy(f + 6, t->src_mac, 6);
	wr_be16(f + 12, ETHERTYPE_IPV4);

	ip[0] = 0x45; /* version 4, IHL 5: no options */
	ip[1] = 0;    /* DSCP/ECN */
	wr_be16(ip + 2, (uint16_t)(VD_IPV4_HLEN + udp_len));
	/*
	 * RFC 6864 section 4.1: the Identification field only serves fragment reassembly, and a source may
	 * set it to any value in an atomic datagram (DF set, MF clear, offset zero). We send only atomic
	 * datagrams, with ID 0, as Linux does for DF sockets.
	 */
	wr_be16(ip + 4, 0);
	wr_be16(ip + 6, IPV4_FLAG_DF);
	ip[8] = IPV4_TTL;
	ip[9] = IPPROTO_UDP_NUM;
	ip[10] = ip[11] = 0; /* the checksum is computed with its own field zero (RFC 791) */
	memcpy(ip + 12, &t->src_ip_be, 4);
	memcpy(ip + 16, &t->dst_ip_be, 4);
	uint16_t ip_csum = vd__csum_fold(vd__csum_partial(ip, VD_IPV4_HLEN, 0));
	memcpy(ip + 10, &ip_csum, 2);

	memcpy(udp, &t->src_port_be, 2);
	memcpy(udp + 2, &t->dst_port_be, 2);
	wr_be16(udp + 4, udp_len);
	udp[6] = udp[7] = 0;
	if (csum == VD_UDP_CSUM_PARTIAL) {
		/* The device sums from the UDP header on and adds this; ~fold gives the uncomplemented sum. */
		uint16_t c = (uint16_t)~vd__csum_fold(udp_pseudo_sum(t->src_ip_be, t->dst_ip_be, htons(udp_len)));
		memcpy(udp + 6, &c, 2);
	} else if (csum == VD_UDP_CSUM_FULL) {
		uint32_t pseudo = udp_pseudo_sum(t->src_ip_be, t->dst_ip_be, htons(udp_len));
		uint16_t c = vd__csum_fold(vd__csum_partial(udp, udp_len, pseudo));
		/* RFC 768: a computed checksum of zero is sent as all ones; zero would mean "none". */
		if (c == 0)
			c = 0xffff;
		memcpy(udp + 6, &c, 2);
	}
	return VD_FRAME_HDR_LEN + payload_len;
}

int vd__ipv4_parse(const void *pkt, size_t len, struct vd__ipv4_view *out)
{
	const uint8_t *ip = pkt;

	if (len < VD_IPV4_HLEN)
		return -EBADMSG;
	/* RFC 791 section 3.1: version 4; IHL counts 32-bit words and is at least 5. */
	if ((ip[0] >> 4) != 4)
		return -EBADMSG;
	size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
	if (ihl < VD_IPV4_HLEN || ihl > len)
		return -EBADMSG;
	/* Total length: header and data; never beyond what arrived (a link may pad, never truncate). */
	size_t tot_len = rd_be16(ip + 2);
	if (tot_len < ihl || tot_len > len)
		return -EBADMSG;
	/* A fragment is not a whole datagram, and nothing in viaduct reassembles. */
	if (rd_be16(ip + 6) & (IPV4_FLAG_MF | IPV4_FRAG_OFFSET_MASK))
		return -EBADMSG;
	size_t l4_min;
	if (ip[9] == VD_IPPROTO_TCP)
		l4_min = VD_TCP_MIN_HLEN; /* RFC 9293 3.1: data offset >= 5 words */
	else if (ip[9] == VD_IPPROTO_UDP)
		l4_min = VD_UDP_HLEN;     /* RFC 768 */
	else
		return -EBADMSG;
	if (tot_len - ihl < l4_min)
		return -EBADMSG;
	/* RFC 791: the header checksum, summed with itself included, verifies to zero (all ones, folded). */
	if (vd__csum_fold(vd__csum_partial(ip, ihl, 0)) != 0)
		return -EBADMSG;

	out->l4 = ip + ihl;
	out->hdr_len = (uint32_t)ihl;
	out->tot_len = (uint32_t)tot_len;
	out->proto = ip[9];
	memcpy(&out->src_ip_be, ip + 12, 4);
	memcpy(&out->dst_ip_be, ip + 16, 4);
	memcpy(&out->src_port_be, ip + ihl, 2);
	memcpy(&out->dst_port_be, ip + ihl + 2, 2);
	return 0;
}

int vd__frame_parse_ipv4(const void *frame, size_t len, struct vd__ipv4_view *out)
{
	const uint8_t *f = frame;

	if (len < VD_ETH_HLEN || rd_be16(f + 12) != ETHERTYPE_IPV4)
		return -EBADMSG;
	return vd__ipv4_parse(f + VD_ETH_HLEN, len - VD_ETH_HLEN, out);
}

void vd__frame_build_eth(void *frame, const uint8_t dst_mac[6], const uint8_t src_mac[6])
{
	uint8_t *f = frame;

	memcpy(f, dst_mac, 6);
	memcpy(f + 6, src_mac, 6);
	wr_be16(f + 12, ETHERTYPE_IPV4);
}

int vd__ipv4_l4_csum_loc(const void *pkt, size_t len, uint32_t *l4_off, uint32_t *csum_off, uint32_t *l4_len)
{
	const uint8_t *ip = pkt;

	if (len < VD_IPV4_HLEN)
		return -EBADMSG;
	uint32_t ihl = (uint32_t)(ip[0] & 0x0f) * 4;
	uint32_t tot = rd_be16(ip + 2);
	/* RFC 9293 3.1: TCP's checksum at offset 16; RFC 768: UDP's at 6. */
	uint32_t off = ip[9] == VD_IPPROTO_TCP ? 16 : ip[9] == VD_IPPROTO_UDP ? 6 : 0;
	if (!off || ihl < VD_IPV4_HLEN || tot > len || ihl + off + 2 > tot)
		return -EBADMSG;
	*l4_off = ihl;
	*csum_off = off;
	*l4_len = tot - ihl;
	return 0;
}

int vd__ipv4_l4_csum_finish(void *pkt, size_t len)
{
	uint8_t *ip = pkt;
	uint32_t l4_off, csum_off, l4_len;

	if (vd__ipv4_l4_csum_loc(pkt, len, &l4_off, &csum_off, &l4_len))
		return -EBADMSG;
	/* The field holds the pseudo-header sum, so the sum over the L4 bytes covers everything. */
	uint16_t c = vd__csum_fold(vd__csum_partial(ip + l4_off, l4_len, 0));
	if (c == 0 && ip[9] == VD_IPPROTO_UDP)
		c = 0xffff;
	memcpy(ip + l4_off + csum_off, &c, 2);
	return 0;
}
