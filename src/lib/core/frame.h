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

/* ---- IPv4 packets (the nic's VD_NIC_LAYER_IPV4) ---------------------------------------------------- */

#define VD_IPPROTO_TCP 6
#define VD_IPPROTO_UDP 17
#define VD_TCP_MIN_HLEN 20

/* What a received IPv4 packet holds; l4 points into the packet. */
struct vd__ipv4_view {
	const uint8_t *l4;       /* the TCP or UDP header */
	uint32_t hdr_len;        /* IHL * 4 */
	uint32_t tot_len;        /* IPv4 total length (<= the bytes given: link padding is not part of it) */
	uint32_t src_ip_be, dst_ip_be;
	uint16_t src_port_be, dst_port_be;
	uint8_t proto;           /* VD_IPPROTO_TCP or VD_IPPROTO_UDP */
};

/*
 * Parses and checks a bare IPv4 packet (RFC 791): version 4, IHL >= 5 within the packet, total length
 * within the bytes given (trailing link padding allowed) and covering the header, header checksum valid,
 * not a fragment (MF clear, offset zero: nothing here reassembles), protocol TCP or UDP, and at least the
 * minimal L4 header inside the total length (TCP 20 bytes, UDP 8) so that the ports can be read. The L4
 * header's other fields and its checksum are NOT checked: they are the user-level stack's business.
 * Returns 0, or -EBADMSG.
 */
int vd__ipv4_parse(const void *pkt, size_t len, struct vd__ipv4_view *out);

/* Same for an Ethernet II frame carrying one (EtherType IPv4, no VLAN tag); the view points past the
 * Ethernet header, the MACs are at frame and frame + 6. */
int vd__frame_parse_ipv4(const void *frame, size_t len, struct vd__ipv4_view *out);

/*
 * Where the TCP or UDP checksum of an IPv4 packet lies, for completing a CHECKSUM_PARTIAL one (the field
 * holding the folded pseudo-header sum): *l4_off = IHL * 4, *csum_off = its offset inside the L4 header,
 * *l4_len = total length - IHL * 4. Reads only the IPv4 header's IHL, total length and protocol. Returns 0,
 * or -EBADMSG when the header does not place a TCP/UDP checksum inside len bytes.
 */
int vd__ipv4_l4_csum_loc(const void *pkt, size_t len, uint32_t *l4_off, uint32_t *csum_off, uint32_t *l4_len);
/* Completes it in software (RFC 1071 sum over the L4 bytes, complemented; UDP's 0 sent as 0xffff). */
int vd__ipv4_l4_csum_finish(void *pkt, size_t len);

/* Writes an Ethernet II header (EtherType IPv4) at frame. */
void vd__frame_build_eth(void *frame, const uint8_t dst_mac[6], const uint8_t src_mac[6]);

/* RFC 1071 sum helpers. */
uint32_t vd__csum_partial(const void *data, size_t len, uint32_t sum);
uint16_t vd__csum_fold(uint32_t sum);

#endif
