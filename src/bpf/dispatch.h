/* SPDX-License-Identifier: MIT */
/*
 * Layout shared by the XDP dispatcher (dispatch.bpf.c), viaductd (which fills the maps) and the library
 * (which reads steering-ring records). Plain C types only: this header is compiled for BPF and for the
 * host.
 */
#ifndef VD_BPF_DISPATCH_H
#define VD_BPF_DISPATCH_H

#define VD_BPF_MAX_EPS 256     /* endpoints per interface (ringbuf array, stats array) */
#define VD_BPF_MAX_QUEUES 64   /* XSKMAP entries */

/*
 * vd_ports: who owns a destination port of the interface, an ARRAY indexed by protocol and port. Not a
 * hash: the lookup compiles to a bounds check and an offset, where hashing the key cost about a third of
 * the dispatcher's time per frame. Endpoints bind the interface's own address, so the port decides and
 * the entry's ip_be confirms. 2 x 65536 entries of 16 bytes: 2 MiB per interface.
 */
#define VD_BPF_PORT_SLOTS (2u * 65536u)
static inline __u32 vd_bpf_port_index(__u8 proto, __u16 port_host)
{
	return (proto == 6 /* IPPROTO_TCP */ ? 65536u : 0u) + port_host;
}

#define VD_BPF_EP_DIRECT 1u   /* frames arriving on ep.queue are redirected to the endpoint's XSK */
#define VD_BPF_EP_VALID 2u    /* the slot is in use (array slots cannot be deleted, only cleared) */
/*
 * A held port (VALID | HOLD): owned by no endpoint, still reserved in the kernel; its frames are dropped,
 * so the kernel never answers them (TCP TIME-WAIT kept by viaductd, RFC 9293 3.6.1). ep_id is meaningless.
 */
#define VD_BPF_EP_HOLD 4u

struct vd_bpf_ep {
	__u32 ep_id;    /* index into vd_rings and vd_ep_stats */
	__u32 queue;    /* queue of the endpoint's XSK */
	__u32 flags;    /* VD_BPF_EP_* */
	__u32 ip_be;    /* the destination address that must match */
};

/*
 * Steering-ring record: BPF ringbuf sample, reserved with one of the constant size classes below
 * (bpf_ringbuf_reserve needs a constant size). `len` bytes of the frame follow, from the Ethernet header.
 */
struct vd_bpf_rec {
	__u32 len;
	__u32 rx_queue;
};
#define VD_BPF_CLASS_0 128
#define VD_BPF_CLASS_1 512
#define VD_BPF_CLASS_2 1536
#define VD_BPF_CLASS_3 4096
/* Jumbo frames (multi-buffer XDP, the dispatcher is an "xdp.frags" program): MTU 9000 fits class 4; the
 * last class covers the largest frame an endpoint can take (VD_BPF_MAX_FRAGS chunks, see below). */
#define VD_BPF_CLASS_4 9216
#define VD_BPF_CLASS_5 16384
#define VD_BPF_CLASS_6 65536
#define VD_BPF_MAX_STEER VD_BPF_CLASS_6 /* largest frame (L2 bytes) that can be steered */

/*
 * Multi-buffer AF_XDP: a frame larger than one UMEM chunk (4096 here) arrives as several RX descriptors,
 * one chunk each, and is sent as several TX descriptors. An endpoint takes at most this many chunks per
 * frame: with 4096-byte chunks and the 256 bytes of copy-mode headroom, 16 x 3840 = 61440 bytes, which the
 * last steering class holds too.
 */
#define VD_BPF_MAX_FRAGS 16u

/* The steering-ring record size class for a frame of len L2 bytes (0: too big to steer). */
static inline __u32 vd_bpf_steer_class(__u32 len)
{
	return len <= VD_BPF_CLASS_0 ? VD_BPF_CLASS_0 : len <= VD_BPF_CLASS_1 ? VD_BPF_CLASS_1 :
	       len <= VD_BPF_CLASS_2 ? VD_BPF_CLASS_2 : len <= VD_BPF_CLASS_3 ? VD_BPF_CLASS_3 :
	       len <= VD_BPF_CLASS_4 ? VD_BPF_CLASS_4 : len <= VD_BPF_CLASS_5 ? VD_BPF_CLASS_5 :
	       len <= VD_BPF_CLASS_6 ? VD_BPF_CLASS_6 : 0;
}

/* Per-endpoint counters (PERCPU_ARRAY vd_ep_stats, index ep_id). */
struct vd_bpf_ep_stats {
	__u64 redirected;
	__u64 steered;
	__u64 bytes;
	__u64 dropped;   /* ring full or frame too big */
};

/* Per-interface counters (PERCPU_ARRAY vd_glob_stats, one entry). */
struct vd_bpf_glob_stats {
	__u64 passed;
	__u64 malformed;
	__u64 steered;
	__u64 redirected;
	__u64 ring_full;
	__u64 too_big;
	__u64 held;      /* dropped: a held port's frame */
};

#endif
