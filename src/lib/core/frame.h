/* SPDX-License-Identifier: MIT */
/*
 * Ethernet II / IPv4 / UDP framing for the xdp backend: the parser for untrusted received frames (fuzzed:
 * tests/fuzz/fuzz_frame.c) and the header builder for transmitted ones. Checksums per RFC 791 (IPv4
 * header) and RFC 768 (UDP, with the RFC 1071 one's-complement sum).
 */
#ifndef VD_CORE_FRAME_H
#define VD_CORE_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define VD_ETH_HLEN 14
#define VD_IPV4_HLEN 20   /* what we send: no options */
#define VD_UDP_HLEN 8
#define VD_FRAME_HDR_LEN (VD_ETH_HLEN + VD_IPV4_HLEN + VD_UDP_HLEN)   /* 42: payload offset of sent frames */

/* What a received Ethernet/IPv4/UDP frame holds; pointers point into the frame. */
struct vd__udp_view {
	const uint8_t *payload;
	uint32_t payload_len;
	uint32_t src_ip_be, dst_ip_be;
	uint16_t src_port_be, dst_port_be;
	const uint8_t *src_mac, *dst_mac;
};

/*
 * Parses and checks a frame: Ethernet II with EtherType IPv4 (no VLAN tag), IPv4 version 4, IHL >= 5 within
 * the frame, total length within the frame (Ethernet padding allowed), header checksum valid, not a fragment,
 * protocol UDP, UDP length consistent with the IP length, UDP checksum valid or zero (RFC 768: zero means
 * none). A checksum field holding only the pseudo-header sum is also accepted: that is what a Linux veth
 * peer with TX checksum offload emits (CHECKSUM_PARTIAL is never completed on a virtual link).
 * Returns 0, or -EBADMSG for anything malformed.
 */
int vd__frame_parse_udp(const void *frame, size_t len, struct vd__udp_view *out);

struct vd__udp_tmpl {
	uint8_t src_mac[6];
	uint8_t dst_mac[6];
	uint32_t src_ip_be, dst_ip_be;
	uint16_t src_port_be, dst_port_be;
};

/* What goes into the UDP checksum field of a built frame. */
enum vd__udp_csum {
	VD_UDP_CSUM_NONE,    /* zero: "no checksum" (RFC 768) */
	VD_UDP_CSUM_FULL,    /* computed over pseudo-header, header and payload */
	VD_UDP_CSUM_PARTIAL, /* only the folded pseudo-header sum: the device completes it (TX offload, the
			      * CHECKSUM_PARTIAL contract of Linux and of AF_XDP TX metadata) */
};

/*
 * Writes the 42 bytes of headers in front of a payload of payload_len bytes that is already at
 * frame + VD_FRAME_HDR_LEN; computes the IPv4 header checksum and fills the UDP checksum as asked.
 * Returns the frame length.
 */
size_t vd__frame_build_udp(void *frame, const struct vd__udp_tmpl *t, size_t payload_len, enum vd__udp_csum csum);

/* Offset of the UDP checksum's coverage and of the field within it, for a device completing it. */
#define VD_FRAME_UDP_OFF (VD_ETH_HLEN + VD_IPV4_HLEN)
#define VD_FRAME_UDP_CSUM_OFF 6

/* RFC 1071 sum helpers. */
uint32_t vd__csum_partial(const void *data, size_t len, uint32_t sum);
uint16_t vd__csum_fold(uint32_t sum);

#endif
